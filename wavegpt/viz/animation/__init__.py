"""MP4 videos of the wave dynamics during generation (wavegpt-animate, the app's Render animation):
canvas.py (the drawing surface), panels.py (one class per panel), render.py (the scene and the render)."""

from .panels import CLASSIC_NOTE, MAX_FRAMES_PER_TOKEN, FrameState
from .render import (
    MAX_FPS,
    MAX_SIZE,
    MAX_TOKENS,
    MIN_FPS,
    MIN_SIZE,
    AnimationResult,
    check_layer_head,
    check_output,
    check_render_args,
    parse_size,
    render_animation,
)

__all__ = ["AnimationResult", "FrameState", "CLASSIC_NOTE", "MAX_TOKENS", "MAX_FRAMES_PER_TOKEN", "MAX_FPS", "MIN_FPS",
           "MAX_SIZE", "MIN_SIZE", "check_layer_head", "check_output", "check_render_args", "parse_size",
           "render_animation"]
