"""The offline Qwen2-VL through the real processor and chat template: images, constraints, two passes, batching."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from services.common.batching import BatchFn, MicroBatcher
from services.common.errors import DeadlineExceeded, InvalidArgument
from services.decision.backends.local import CHOOSE, TransformersBackend
from services.decision.core import DecisionInput, DecisionMaker
from services.decision.preprocess import image_tokens, prepare_images
from services.decision.prompt import PromptInput, final_prompts, reasoning_prompt

QUESTION = "Is there any defect in the object?"
YN = {"A": "Yes.", "B": "No."}


def test_every_image_gets_its_image_tokens(local_model, png) -> None:
    """One <|vision_start|> per image, and exactly the expected number of <|image_pad|> tokens in total."""
    sizes = [(56, 56), (120, 80), (300, 200), (64, 500)]
    imgs = prepare_images([(f"i{k}", png(k, s)) for k, s in enumerate(sizes)], 56 * 56, 448 * 448)
    pin = PromptInput(QUESTION, YN, n_references=3, knowledge="Normal: flat grey.", reasoning=True)
    first = reasoning_prompt(pin, imgs[0], imgs[1:], 16)
    for prompt in (first, *final_prompts(pin, imgs[0], imgs[1:], reasoning="looks fine", first_pass=first)):
        text = local_model.render(prompt)
        enc = local_model.processor(text=[text], images=prompt.images, return_tensors="pt")
        ids = enc["input_ids"][0].tolist()
        tok = local_model.tokenizer
        assert ids.count(tok.convert_tokens_to_ids("<|vision_start|>")) == 4
        assert ids.count(tok.convert_tokens_to_ids("<|vision_end|>")) == 4
        assert ids.count(tok.convert_tokens_to_ids("<|image_pad|>")) == sum(image_tokens(i) for i in imgs)
        assert enc["image_grid_thw"].shape[0] == 4


async def test_200_random_requests_all_get_a_valid_option_letter(patient_maker: DecisionMaker, png) -> None:
    maker = patient_maker
    rng = random.Random(7)
    texts = ["Scratch.", "Crack.", "Hole.", "Contamination.", "Good.", "Bent lead.", "Missing cable.", "Yes.", "No."]
    requests = []
    for i in range(200):
        n = rng.randint(2, 5)
        options = dict(zip("ABCDE"[:n], rng.sample(texts, n), strict=True))
        refs = [png(1000 + i * 7 + k, rng.choice([56, 84])) for k in range(rng.randint(0, 2))]
        requests.append(
            DecisionInput(png(i, (rng.choice([56, 84, 112]), 56)), f"Question {i}: which one?", options, refs)
        )
    sem = asyncio.Semaphore(8)

    async def one(inp: DecisionInput) -> tuple[str, dict[str, str]]:
        async with sem:
            r = await maker.decide(inp)
        assert not r.unparsed and r.completion_tokens == 1
        assert set(r.scores) == set(inp.options) and abs(sum(r.scores.values()) - 1) < 1e-4
        return r.answer, inp.options

    results = await asyncio.gather(*(one(inp) for inp in requests))
    assert all(answer in options for answer, options in results)
    assert max(maker.backend.batcher.batches) > 1  # concurrent requests shared forward calls


def test_the_constrained_answer_is_the_argmax_over_the_letters_only(local_model, png) -> None:
    """Cross-check against a plain forward: the choice is the best of the letter logits, not of the vocabulary."""
    torch = local_model.torch
    (img,) = prepare_images([("q", png(3))], 56 * 56, 448 * 448)
    options = {"A": "Scratch.", "B": "Crack.", "C": "Hole."}
    (prompt,) = final_prompts(PromptInput("What is the type of the defect?", options), img, [])
    (reply,) = local_model.run_batch(CHOOSE, [prompt])
    enc = local_model.processor(text=[local_model.render(prompt)], images=[img], return_tensors="pt")
    with torch.inference_mode():
        logits = local_model.model(**enc).logits[0, -1]
    ids = [local_model.tokenizer.convert_tokens_to_ids(c) for c in "ABC"]
    assert reply.text == "ABC"[int(torch.argmax(logits[ids]))]
    assert int(torch.argmax(logits)) not in ids  # unconstrained, this random model would not say a letter at all


async def test_two_pass_mode_puts_the_reasoning_into_the_final_prompt(maker: DecisionMaker, png) -> None:
    inp = DecisionInput(
        png(1),
        QUESTION,
        YN,
        [png(2)],
        knowledge="Normal: uniform.",
        reasoning=True,
        return_prompt=True,
        max_reasoning_tokens=12,
    )
    r = await maker.decide(inp)
    assert r.reasoning.strip()
    assert r.reasoning in r.prompt  # the Reasoning Expert's text is in the Decision Maker's prompt
    assert r.prompt.index("Reasoning guidance") < r.prompt.index(r.reasoning) < r.prompt.rindex("option's letter")
    assert r.answer in YN and not r.unparsed
    assert r.completion_tokens <= 12 + 1
    one = await maker.decide(DecisionInput(png(1), QUESTION, YN, [png(2)], return_prompt=True))
    assert "Reasoning guidance" not in one.prompt and r.prompt_tokens > 2 * one.prompt_tokens


async def test_open_qa_and_true_false_run_through_the_model(maker: DecisionMaker, png) -> None:
    options = {"A": "Scratch.", "B": "Crack.", "C": "Hole."}
    tf = await maker.decide(
        DecisionInput(png(4), "What is the type of the defect?", options, answer_format="true_false")
    )
    assert set(tf.scores) == set(options) and tf.answer == max(options, key=tf.scores.__getitem__)
    assert tf.raw_reply.count(":") == 3 and tf.completion_tokens == 3
    oq = await maker.decide(DecisionInput(png(4), "What is the type of the defect?", options, answer_format="open_qa"))
    assert oq.completion_tokens >= 1 and oq.raw_reply  # free text from a random model
    assert oq.unparsed == (oq.answer == "")  # mapped to an option only when the words overlap


async def test_batched_answers_equal_one_at_a_time_answers(patient_maker: DecisionMaker, png) -> None:
    maker = patient_maker
    inps = [DecisionInput(png(50 + i, 56 + 28 * (i % 3)), QUESTION, YN, [png(90 + i)] * (i % 2)) for i in range(6)]
    alone = [await maker.decide(i) for i in inps]
    maker.backend.batcher.batches.clear()
    together = await asyncio.gather(*(maker.decide(i) for i in inps))
    assert maker.backend.batcher.batches == [6]
    for a, b in zip(alone, together, strict=True):
        assert a.answer == b.answer
        assert a.scores == pytest.approx(b.scores, abs=1e-4)  # left padding changes nothing


async def test_too_many_images_is_invalid_argument_giving_the_limit(maker: DecisionMaker, png) -> None:
    with pytest.raises(InvalidArgument, match=r"reference_images: has 5 images .* the model allows 4"):
        await maker.decide(DecisionInput(png(0), QUESTION, YN, [png(i) for i in range(1, 5)]))


async def test_a_prompt_over_the_context_is_invalid_argument_giving_the_limit(settings, local_model, png) -> None:
    small = settings.model_copy(update={"max_model_len": 256})
    dm = DecisionMaker(TransformersBackend.from_settings(small, local_model), small)
    try:
        with pytest.raises(InvalidArgument, match=r"prompt: is \d+ tokens \+ 1 new, over the model's context of 256"):
            await dm.decide(DecisionInput(png(0), QUESTION, YN, knowledge="word " * 300))
        assert (await dm.decide(DecisionInput(png(0), QUESTION, YN))).answer in YN  # a short one still fits
    finally:
        await dm.close()


async def test_a_deadline_that_passes_is_deadline_exceeded_naming_the_backend(maker: DecisionMaker, png) -> None:
    with pytest.raises(DeadlineExceeded, match="transformers backend"):
        await maker.decide(
            DecisionInput(png(0), QUESTION, YN, reasoning=True, max_reasoning_tokens=64), timeout_s=0.001
        )


async def test_concurrent_reasoning_passes_share_one_generate_call(patient_maker: DecisionMaker, png) -> None:
    maker = patient_maker
    inps = [
        DecisionInput(png(70 + i, 56 + 28 * i), QUESTION, YN, reasoning=True, max_reasoning_tokens=8) for i in range(4)
    ]
    alone = [await maker.decide(i) for i in inps]
    maker.backend.batcher.batches.clear()
    together = await asyncio.gather(*(maker.decide(i) for i in inps))
    assert maker.backend.batcher.batches[0] == 4  # the four reasoning passes ran as one left-padded generate call
    assert [r.reasoning for r in together] == [r.reasoning for r in alone]


async def test_a_lone_request_never_waits_for_a_batch_to_fill(patient_maker: DecisionMaker, png) -> None:
    """The batcher waits (here up to 5 s) only while other open decisions could still join."""
    await patient_maker.decide(DecisionInput(png(1), QUESTION, YN))  # warm
    t = time.perf_counter()
    await patient_maker.decide(DecisionInput(png(2), QUESTION, YN, reasoning=True, max_reasoning_tokens=4))
    assert time.perf_counter() - t < 2.5
    assert patient_maker.backend.batcher.batches[-2:] == [1, 1]


async def test_the_backend_batches_through_the_batcher_it_is_built_with(settings, local_model, png) -> None:  # type: ignore[no-untyped-def]
    built: list[dict[str, object]] = []

    def factory(fn: BatchFn, **kw: Any) -> MicroBatcher:
        built.append(kw)
        return MicroBatcher(fn, **kw)

    dm = DecisionMaker(TransformersBackend.from_settings(settings, local_model, batcher_factory=factory), settings)
    try:
        assert (await dm.decide(DecisionInput(png(0), QUESTION, YN))).answer in YN
        assert [(b["stage"], b["fill"]) for b in built] == [("decision", "sessions")]
        assert dm.backend.batcher.batches == [1]  # type: ignore[attr-defined]
    finally:
        await dm.close()


async def test_free_answers_are_generated_and_parsed_as_mmad_does(settings, local_model, png) -> None:
    """decision.answer_mode free: no constraint, up to free_answer_tokens, MMAD's parser (last A-E, then difflib)."""
    from services.common.answers import read_letter

    options = {"A": "Scratch.", "B": "Crack.", "C": "Hole."}
    s = settings.model_copy(update={"answer_mode": "free", "free_answer_tokens": 12})
    dm = DecisionMaker(TransformersBackend.from_settings(s, local_model), s)
    try:
        r = await dm.decide(DecisionInput(png(5), "What is the type of the defect?", options, [png(6)]))
    finally:
        await dm.close()
    assert 1 <= r.completion_tokens <= 12 and r.raw_reply
    assert r.answer == read_letter(r.raw_reply, options, free=True) and r.unparsed == (r.answer == "")


async def test_the_model_completes_text_without_images(maker: DecisionMaker) -> None:
    """The Complete RPC's core: a text-only prompt, bounded new tokens (the Knowledge Guide's refiner uses it)."""
    r = await maker.complete_text("Summarise: the rim of a bottle must be round.", max_tokens=6)
    assert 1 <= r.completion_tokens <= 6 and r.prompt_tokens > 5 and r.model_id == maker.model_id
    with pytest.raises(InvalidArgument, match="prompt"):
        await maker.complete_text("  ")
