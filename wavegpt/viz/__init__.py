"""Looking inside: curves.py (a run's learning curve), wave_plots.py (the wave plots of a model, one function
each and a registry), animation/ (the MP4 of generation). matplotlib and imageio-ffmpeg come with the [viz] extra."""
