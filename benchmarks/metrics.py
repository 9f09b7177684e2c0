"""What the benchmark scripts measure of results: the pixel judge's verdicts on an edit and their summary, fidelity
outside the mask, the seam, diversity; and averaging."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from benchmarks.common import timed_edit
from blended_pipeline.ranking import edge_step
from blended_pipeline.shapes.edits import EDIT_SETS, EditCase, edit_cases
from blended_pipeline.shapes.judge import Verdict, judge

PSNR_CAP = 100.0  # dB, reported for a background that is bit-exact


def psnr_where(sample: np.ndarray, image: np.ndarray, where: np.ndarray) -> float:
    """PSNR (dB) of a (H, W, 3) sample against ``image`` where ``where`` is true; ``PSNR_CAP`` when identical."""
    error = np.mean((sample[where].astype(np.float64) - image[where]) ** 2)
    return PSNR_CAP if error == 0 else min(PSNR_CAP, 10 * math.log10(255**2 / error))


def psnr_outside(sample: np.ndarray, image: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB) of a (H, W, 3) sample against the input where the mask is 0: how well the background is kept."""
    return psnr_where(sample, image, ~mask)


def border_step(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean colour step (mean absolute RGB difference, 0-255) between 4-neighbours on opposite sides of the mask:
    the ranking's ``edge_step`` (summed over channels, in [-1, 1] units) on the 0-255 scale of one channel."""
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
    step = edge_step(pixels, torch.from_numpy(np.array(mask))[None, None])
    return float(step[0]) * 127.5 / 3


def diversity(results: list[np.ndarray], mask: np.ndarray) -> float:
    """Mean absolute difference (0-255) inside the mask between every pair of samples."""
    pairs = list(itertools.combinations(results, 2))
    if not pairs:
        return 0.0
    return float(np.mean([np.abs(a[mask].astype(np.float32) - b[mask]).mean() for a, b in pairs]))


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8."""
    array = ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return array.permute(0, 2, 3, 1).cpu().numpy()


def averages(per_edit: list[dict]) -> dict[str, float]:
    """Each per-edit figure's mean over the edits."""
    return {key: float(np.mean([edit[key] for edit in per_edit])) for key in per_edit[0]}


FAILURE_KINDS = ("no_colour", "too_small", "wrong_shape")


def failure_kind(verdict: Verdict) -> str:
    """Why the judge refused a result, in one word: no colour, too small, or the wrong shape."""
    if verdict.reason.startswith("no "):
        return "no_colour"
    return "too_small" if "too small" in verdict.reason else "wrong_shape"


def judged_edit(pipe, case: EditCase, seed: int, settings: dict) -> dict:
    """One edit of ``case`` at ``settings``, timed, each result judged: what ``summary`` averages."""
    edit = timed_edit(pipe, case.image, case.mask, case.prompt, seed, **settings)
    return judged_results(edit.results, case, edit.seconds)


def judged_results(results: list[np.ndarray], case: EditCase, seconds: float) -> dict:
    """An edit's (H, W, 3) uint8 results of ``case`` (the one shown first first), made in ``seconds``, each judged,
    and how far any of them strays from the input outside the mask (0-255)."""
    verdicts = [judge(result, case.mask, case.prompt) for result in results]
    keep = ~case.mask
    outside_change = int(max(np.abs(result[keep].astype(np.int16) - case.image[keep]).max() for result in results))
    return {
        "results": results,
        "verdicts": [verdict.ok for verdict in verdicts],
        "failures": [failure_kind(verdict) for verdict in verdicts if not verdict.ok],
        "seconds_per_image": seconds / len(results),
        "seam_step": border_step(results[0], case.mask),
        "background_exact": outside_change == 0,
        "outside_change": outside_change,
        "diversity": diversity(results, case.mask),
    }


def summary(per_edit: list[dict]) -> dict:
    """Top-1 success, the share of edits with any accepted result (what a perfect ranking of the results returned
    would reach), batch precision with the results' diversity beside it (four near-copies must not read as four
    independent successes), seconds per image, seam step, background exactness and the refused results by reason,
    over ``judged_edit``'s edits."""
    return {
        "edits": len(per_edit),
        "top1_success": float(np.mean([e["verdicts"][0] for e in per_edit])),
        "any_success": float(np.mean([any(e["verdicts"]) for e in per_edit])),
        "batch_precision": float(np.mean([np.mean(e["verdicts"]) for e in per_edit])),
        "diversity": float(np.mean([e["diversity"] for e in per_edit])),
        "seconds_per_image": float(np.mean([e["seconds_per_image"] for e in per_edit])),
        "seam_step": float(np.mean([e["seam_step"] for e in per_edit])),
        "background_exact": float(np.mean([e["background_exact"] for e in per_edit])),
        "refused_results": {kind: sum(e["failures"].count(kind) for e in per_edit) for kind in FAILURE_KINDS},
    }


def edit_success(pipe, count: int, settings: dict, edit_seed: int = EDIT_SETS["judged"]) -> dict:
    """Edit ``count`` cases of an edit set at ``settings`` (which name the views and the gradient) and judge them."""
    top1, any_ok, exact, seconds, failures = [], [], [], [], []
    for index, case in enumerate(edit_cases(edit_seed, count, 32)):
        edit = timed_edit(pipe, case.image, case.mask, case.prompt, index, **settings)
        seconds.append(edit.seconds)
        results = edit.results
        verdicts = [judge(result, case.mask, case.prompt) for result in results]
        top1.append(verdicts[0].ok)
        any_ok.append(any(verdict.ok for verdict in verdicts))
        if not verdicts[0].ok:
            failures.append(failure_kind(verdicts[0]))
        exact.append(all(np.array_equal(r[~case.mask], case.image[~case.mask]) for r in results))
    return {
        "edits": count,
        "num_augmentations": settings["num_augmentations"],
        "backprop_through_unet": settings["backprop_through_unet"],
        "top1_success": float(np.mean(top1)),
        "any_sample_success": float(np.mean(any_ok)),
        "background_exact": float(np.mean(exact)),
        "seconds_per_edit": float(np.mean(seconds)),
        "top1_failures": {kind: failures.count(kind) for kind in FAILURE_KINDS},
    }
