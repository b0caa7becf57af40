"""Generation's stops and batches: a sample ends at end-of-text or before a stop string, several
samples are drawn as one batch yet each equals the single sample of its seed, and the repetition
penalty keeps greedy decoding off tokens it has already used."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import make_checkpoint
from wavegpt.cli.generate import main
from wavegpt.generation import generate_texts, load_for_generation, stream_samples
from wavegpt.sampling import penalize_repeats, sample_tokens
from wavegpt.tokenizer import EOT


@pytest.fixture(scope="module")
def eot_prone(tmp_path_factory):
    """A tiny model nudged towards end-of-text, so that some seeded samples emit it and some do not."""
    folder = make_checkpoint(tmp_path_factory.mktemp("stops") / "m")
    model, tokenizer = load_for_generation(folder)
    with torch.no_grad():
        w = model.head.proj.weight[tokenizer.eot_id]
        model.head.norm.bias.copy_(6.0 * w / w.norm())
    model.save_pretrained(folder, tokenizer=tokenizer)
    return folder, model, tokenizer


def test_a_sample_ends_at_end_of_text(eot_prone):
    _, model, tokenizer = eot_prone
    free = generate_texts(model, tokenizer, "the", 40, temperature=1.0, seed=1, num_samples=6, stop_at_eot=False)
    stopped = generate_texts(model, tokenizer, "the", 40, temperature=1.0, seed=1, num_samples=6)
    assert any(EOT in t for t in free) and any(EOT not in t for t in free)
    assert stopped == [t.split(EOT)[0] for t in free]


def test_batched_samples_equal_single_samples_of_consecutive_seeds(eot_prone):
    _, model, tokenizer = eot_prone
    batch = generate_texts(model, tokenizer, "war", 25, temperature=1.0, seed=9, num_samples=4, stop_at_eot=False)
    assert batch == [generate_texts(model, tokenizer, "war", 25, temperature=1.0, seed=9 + i, stop_at_eot=False)[0]
                     for i in range(4)]
    assert len(set(batch)) > 1


def test_a_sample_ends_before_a_stop_string(eot_prone):
    _, model, tokenizer = eot_prone
    [free] = generate_texts(model, tokenizer, "the", 40, temperature=1.0, seed=3, stop_at_eot=False)
    stop = free[12:15]
    [cut] = generate_texts(model, tokenizer, "the", 40, temperature=1.0, seed=3, stop_at_eot=False, stop=[stop])
    assert cut == free[: free.find(stop)]
    pieces = [p for _, p in stream_samples(model, tokenizer, "the", 40, temperature=1.0, seed=3, stop_at_eot=False,
                                           stop=["no such text", stop])]
    assert "".join(pieces) == cut  # streaming never shows text past the stop
    assert generate_texts(model, tokenizer, "the", 40, temperature=1.0, seed=3, stop_at_eot=False,
                          stop=["\x00never"]) == [free]


def test_repetition_penalty(eot_prone):
    _, model, tokenizer = eot_prone
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    seen = torch.tensor([[True, True, False]])
    assert penalize_repeats(logits, seen, 2.0).tolist() == [[1.0, -4.0, 1.0]]
    prompt = torch.tensor([tokenizer.encode("the king")])
    greedy = [int(t) for t, _ in sample_tokens(model, prompt, 40, temperature=0)]
    assert len(set(greedy)) < len(greedy)  # this model repeats itself when decoding greedily
    penalised = [int(t) for t, _ in sample_tokens(model, prompt, 40, temperature=0, repetition_penalty=100.0)]
    assert len(set(penalised)) == len(penalised) and not set(penalised) & set(prompt[0].tolist())
    with pytest.raises(ValueError, match="repetition_penalty"):
        generate_texts(model, tokenizer, "the", 5, repetition_penalty=0.0)


def test_generate_command_stops_batches_and_reports(eot_prone, capsys):
    folder, model, tokenizer = eot_prone
    main(["--checkpoint", str(folder), "--prompt", "the", "--max-new-tokens", "40", "--seed", "1", "--temperature",
          "1", "--num-samples", "6"])
    captured = capsys.readouterr()
    texts = generate_texts(model, tokenizer, "the", 40, temperature=1.0, seed=1, num_samples=6, top_k=50)
    assert captured.out == "the" + ("\n" + "-" * 40 + "\n" + "the").join(texts) + "\n"
    assert EOT not in captured.out and "sample(s) ended at end-of-text or a stop string" in captured.err
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(folder), "--repetition-penalty", "-1"])
    assert e.value.code == 2 and "--repetition-penalty" in capsys.readouterr().err
