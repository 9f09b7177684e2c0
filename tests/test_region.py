"""The edit region (``region``): the mask at the model's resolution, pasting back, feathering, the crop box and
the fill from the surround."""

from __future__ import annotations

import torch

from blended_pipeline.region import fill_from_surround, paste, to_resolution


def test_mask_at_model_resolution_covers_every_masked_pixel():
    mask = torch.zeros(1, 1, 64, 64, dtype=torch.bool)
    mask[..., 10, 10] = True  # one pixel
    _, small = to_resolution(torch.zeros(1, 3, 64, 64), mask, (16, 16))
    assert small.sum() == 1 and small[0, 0, 2, 2] == 1


def test_paste_keeps_the_input_outside_the_mask():
    source = torch.rand(1, 3, 10, 14)
    mask = torch.zeros(1, 1, 10, 14, dtype=torch.bool)
    mask[..., 2:5, 3:9] = True
    out = paste(torch.ones(2, 3, 8, 8), source, mask)
    assert out.shape == (2, 3, 10, 14)
    assert torch.equal(out[:, :, ~mask[0, 0]], source[:, :, ~mask[0, 0]].expand(2, -1, -1))
    assert torch.allclose(out[:, :, mask[0, 0]], torch.tensor(1.0))


def test_feather_ramps_outward_and_reaches_exact_zero():
    from blended_pipeline.region import feather

    mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    mask[..., 12:20, 12:20] = True
    assert torch.equal(feather(mask, 0), mask.float())
    soft = feather(mask, 3)
    assert torch.all(soft[mask] == 1)
    ramp = soft[0, 0, 15, 20:24]
    assert torch.all(ramp[:-1] > ramp[1:]) and 0 < ramp[0] < 1
    assert torch.all(soft[0, 0, :, :8] == 0) and torch.all(soft[0, 0, :8] == 0)


def test_crop_box_is_square_contains_the_mask_and_stays_inside():
    from blended_pipeline.region import crop_box

    mask = torch.zeros(1, 1, 200, 300)
    mask[..., 10:30, 250:290] = 1  # 20 x 40 near the top-right corner
    top, left, bottom, right = crop_box(mask, 32, margin=0.25)
    assert bottom - top == right - left == 60
    assert 0 <= top <= 10 and bottom >= 30 and left <= 250 and right <= 300
    assert crop_box(mask[..., :32, :32], 32, 0.25) == (0, 0, 32, 32)  # not larger than the model: whole image
    wide = torch.zeros(1, 1, 100, 400)
    wide[..., 40:60, 10:390] = 1
    assert crop_box(wide, 32, 0.25) == (0, 0, 100, 400)  # no square fits: whole image


def test_fill_from_surround_paints_the_mask_with_the_colour_around_it():
    image = torch.zeros(2, 3, 16, 16)
    image[:, 0] = 0.5  # a background of (0.5, 0, 0)
    image[:, :, 5:11, 5:11] = 1.0  # an object under the mask
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, 4:12, 4:12] = 1
    mask[1] = 1  # no ring: everything is masked
    filled = fill_from_surround(image, mask)
    torch.testing.assert_close(filled[0, :, 4:12, 4:12], torch.tensor([0.5, 0.0, 0.0]).view(3, 1, 1).expand(3, 8, 8))
    assert torch.equal(filled[0][(mask[0] == 0).expand(3, -1, -1)], image[0][(mask[0] == 0).expand(3, -1, -1)])
    assert torch.equal(filled[1], image[1])
    soft = fill_from_surround(image[:1], mask[:1] * 0.5)  # a soft mask mixes the fill in by its value
    torch.testing.assert_close(soft[0, :, 7, 7], (image[0, :, 7, 7] + torch.tensor([0.5, 0.0, 0.0])) / 2)


def test_a_region_is_the_whole_feathered_mask_cut_to_its_crop():
    """The region feathers only a window around the mask, yet equals feathering the whole mask and cutting the
    square around its support, zero exactly where that is; near an image border too."""
    from blended_pipeline.region import EditRegion, crop_box, feather

    for box in ((60, 80, 75, 95), (0, 2, 9, 14), (110, 170, 120, 180)):
        mask = torch.zeros(1, 1, 120, 180, dtype=torch.bool)
        mask[..., box[0] : box[2], box[1] : box[3]] = True
        for blur in (0.0, 0.4, 3.0, 7.5):
            whole = feather(mask, blur)
            region = EditRegion.around(torch.rand(1, 3, 120, 180), mask, (16, 16), 0.25, blur)
            top, left, bottom, right = crop_box(whole, 16, 0.25)
            assert region.crop == (..., slice(top, bottom), slice(left, right))
            cut = whole[region.crop]  # a convolution over a smaller window may add in another order: 1e-7 apart
            assert torch.equal(region.crop_mask == 0, cut == 0) and torch.allclose(region.crop_mask, cut, atol=1e-6)


def test_an_8_bit_input_is_edited_as_its_floats_and_pasted_back_in_8_bits():
    import numpy as np
    import PIL.Image

    from blended_pipeline.image_io import load_image, load_source
    from blended_pipeline.region import EditRegion

    picture = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    stored, floats = load_source(picture), load_image(picture)
    assert stored.dtype == torch.uint8 and torch.equal(stored.float() / 255, floats)
    mask = torch.zeros(1, 1, 50, 70, dtype=torch.bool)
    mask[..., 20:30, 30:38] = True
    from_bytes, from_floats = (EditRegion.around(s, mask, (16, 16), 0.25, 2.0) for s in (stored, floats))
    assert torch.equal(from_bytes.image, from_floats.image) and torch.equal(from_bytes.mask, from_floats.mask)
    results = torch.rand(3, 3, 16, 16) * 2 - 1
    in_bytes, in_floats = from_bytes.paste(results, stored), from_floats.paste(results, floats)
    assert in_bytes.dtype == torch.uint8 and torch.equal(in_bytes, (in_floats * 255).round().to(torch.uint8))
    soft = torch.zeros(1, 1, 50, 70)
    soft[from_bytes.crop] = from_bytes.crop_mask
    keep = soft[0, 0] == 0
    assert torch.equal(in_bytes[:, :, keep], stored[:, :, keep].expand(3, -1, -1))
    assert not torch.equal(in_bytes[:, :, ~keep], stored[:, :, ~keep].expand(3, -1, -1))


def test_a_zoomed_square_is_the_mask_box_over_the_zoom_inside_the_unzoomed_crop():
    from blended_pipeline.region import zoomed_square

    around = (0, 0, 32, 32)
    top, left, bottom, right = zoomed_square((2, 20, 14, 30), around, 0.75)  # 12 x 10 near the top edge
    assert bottom - top == right - left == 16  # ceil(12 / 0.75)
    assert top <= 2 and bottom >= 14 and left <= 20 and right >= 30  # holds the mask's box
    assert top >= 0 and right <= 32  # moved inside the crop it would have had
    assert zoomed_square((3, 3, 28, 28), around, 0.75) == around  # 25 / 0.75 > 32: no smaller square
    assert zoomed_square((10, 10, 14, 14), (0, 0, 20, 40), 0.1) == (0, 0, 20, 40)  # no wider than the crop's height
    assert zoomed_square((41, 61, 49, 69), (30, 50, 60, 80), 0.5) == (37, 57, 53, 73)  # centred, inside the crop
    assert zoomed_square((30, 50, 38, 58), (30, 50, 60, 80), 0.5) == (30, 50, 46, 66)  # moved in from its corner
    assert zoomed_square((41, 61, 49, 69), (30, 50, 60, 80), 1.0, margin=0.25) == (39, 59, 51, 71)  # the margin kept


def test_a_zoomed_region_edits_a_tighter_crop_and_keeps_the_unzoomed_one_as_its_view():
    from blended_pipeline.region import EditRegion

    source = torch.rand(1, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    mask[..., 8:20, 10:22] = True
    plain = EditRegion.around(source, mask, (32, 32), 0.1)
    zoomed = EditRegion.around(source, mask, (32, 32), 0.1, zoom=0.75)
    assert plain.view is None and EditRegion.around(source, mask, (32, 32), 0.1, zoom=0.3).view is None
    wide = EditRegion.around(source, mask, (32, 32), 0.5, zoom=0.75)  # the margin's context kept: 24 a side, not 16
    assert wide.crop == (..., slice(2, 26), slice(4, 28))
    assert zoomed.crop == (..., slice(6, 22), slice(8, 24)) and zoomed.image.shape == (1, 3, 32, 32)
    assert zoomed.mask.sum() > 2 * plain.mask.sum()  # the mask covers more of the model's pixels
    assert zoomed.view.crop == plain.crop
    assert torch.equal(zoomed.view.image, plain.image) and torch.equal(zoomed.view.mask, plain.mask)
    results = torch.rand(2, 3, 32, 32) * 2 - 1
    returned = zoomed.paste(results, source)  # exact outside the mask, results inside
    assert torch.equal(returned[:, :, ~mask[0, 0]], source[:, :, ~mask[0, 0]].expand(2, -1, -1))
    assert not torch.equal(returned[:, :, mask[0, 0]], source[:, :, mask[0, 0]].expand(2, -1, -1))


def test_results_of_a_zoomed_crop_are_seen_in_its_view_where_the_crop_lies():
    from blended_pipeline.region import EditRegion

    source = torch.rand(1, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    mask[..., 8:20, 10:22] = True
    zoomed = EditRegion.around(source, mask, (32, 32), 0.1, zoom=0.75)
    view_input = source[zoomed.view.crop]
    seen = zoomed.in_view(torch.ones(2, 3, 32, 32), view_input)  # white over the crop (rows 6-22, columns 8-24)
    assert seen.shape == (2, 3, 32, 32)
    assert torch.all(seen[:, :, 6:22, 8:24] == 1)
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[6:22, 8:24] = False
    assert torch.equal(seen[:, :, outside], (source * 2 - 1)[:, :, outside].expand(2, -1, -1))
    plain = EditRegion.around(source, mask, (32, 32), 0.1)
    results = torch.rand(2, 3, 32, 32)
    assert plain.in_view(results, view_input) is results


def test_a_zoomed_crop_lies_in_its_view_where_it_lies_in_the_input():
    """A view away from the input's corner, enlarged to the model's resolution: the crop's results land where the
    crop lies in it."""
    from blended_pipeline.region import EditRegion, ranking_views

    source = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64, dtype=torch.bool)
    mask[..., 30:34, 30:34] = True
    zoomed = EditRegion.around(source, mask, (16, 16), 0.25, zoom=0.5)
    view, crop = zoomed.view.crop, zoomed.crop
    assert view == (..., slice(24, 40), slice(24, 40)) and crop == (..., slice(28, 36), slice(28, 36))
    seen = zoomed.in_view(torch.ones(1, 3, 16, 16), source[view])
    expected = source[view].clone()
    expected[..., 4:12, 4:12] = 1  # where the crop lies in the view
    assert torch.equal(seen, expected * 2 - 1)
    small = source[..., :12, :12]  # smaller than the model: the view is the whole image, enlarged
    small_mask = mask[..., 25:37, 25:37]
    enlarged = EditRegion.around(small, small_mask, (16, 16), 0.25, zoom=0.5)
    assert enlarged.view.crop == (..., slice(0, 12), slice(0, 12)) and enlarged.crop == (
        ...,
        slice(3, 11),
        slice(3, 11),
    )
    expected = small.clone()
    expected[..., 3:11, 3:11] = 1
    expected = torch.nn.functional.interpolate(expected, size=(16, 16), mode="bicubic", antialias=True).clamp(0, 1)
    torch.testing.assert_close(enlarged.in_view(torch.ones(1, 3, 16, 16), small), expected * 2 - 1)
    plain = EditRegion.around(source, mask, (16, 16), 0.25)
    rows = torch.cat([plain.image, zoomed.image]).repeat_interleave(2, 0)
    masks = torch.cat([plain.mask, zoomed.mask]).repeat_interleave(2, 0)
    image, mask_seen, to_view = ranking_views([plain, zoomed], [source, source], 2, rows, masks)
    assert torch.equal(image[:2], rows[:2]) and torch.equal(image[2:], zoomed.view.image.expand(2, -1, -1, -1))
    assert torch.equal(mask_seen[2:], zoomed.view.mask.expand(2, -1, -1, -1))
    pixels = torch.rand(4, 3, 16, 16) * 2 - 1
    placed = to_view(pixels, None)
    assert torch.equal(placed[:2], pixels[:2]) and torch.equal(placed[2:], zoomed.in_view(pixels[2:], source[view]))
    assert torch.equal(to_view(pixels[[3, 0]], torch.tensor([3, 0])), placed[[3, 0]])
    assert ranking_views([plain], [source], 2, rows[:2], masks[:2])[2] is None
