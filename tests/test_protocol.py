"""Golden values for the evaluation protocol (worked out by hand from MATLAB's documented algorithms)."""

import numpy as np
import pytest
from scipy import ndimage

from lapsrn import protocol as P


def test_cubic_kernel_values():
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5])
    np.testing.assert_allclose(P.cubic(x), [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.5625])


def test_imresize_upscale_golden_with_symmetric_boundary():
    # imresize([1 2 3 4], 2): u = x/2 + 1/4; first two outputs worked out by hand with mirror padding.
    out = P.imresize(np.array([[1.0, 2.0, 3.0, 4.0]]), 2)
    assert out.shape == (2, 8)
    np.testing.assert_allclose(out[0, :2], [0.90625, 1.1796875], atol=1e-12)
    np.testing.assert_allclose(out[0, 3:5], [2.25, 2.75], atol=1e-12)  # interior: cubic reproduces a ramp
    np.testing.assert_allclose(out[0], out[1])  # vertical size 1 -> 2 copies the row


def test_imresize_downscale_is_antialiased():
    ramp = np.arange(1.0, 33.0)[None, :].repeat(4, axis=0)
    out = P.imresize(ramp, 0.5)
    assert out.shape == (2, 16)
    # interior: u = 2x - 1/2 (1-based) on a ramp; the widened kernel has 8 taps, not 4
    np.testing.assert_allclose(out[0, 3:13], 2 * np.arange(4, 14) - 0.5, atol=1e-12)
    assert np.count_nonzero(P.resize_matrix(32, 16, 0.5).toarray()[5]) == 8
    assert np.count_nonzero(P.resize_matrix(16, 32, 2.0).toarray()[5]) == 4


def test_imresize_of_a_very_long_image_stays_small_in_memory():
    line = np.linspace(0, 1, 500_000)[None, :]  # a dense resize matrix would need 4 TB here
    out = P.imresize(line, 2)
    assert out.shape == (2, 1_000_000)
    assert P.resize_matrix(500_000, 1_000_000, 2.0).nnz <= 6 * 1_000_000


def test_imresize_keeps_constants_and_sizes():
    img = np.full((13, 17, 3), 0.3)
    for scale in (0.25, 0.5, 1 / 3, 2, 3, 4):
        out = P.imresize(img, scale)
        assert out.shape[:2] == (int(np.ceil(13 * scale)), int(np.ceil(17 * scale)))
        np.testing.assert_allclose(out, 0.3, atol=1e-12)
    assert P.imresize(img, size=(20, 9)).shape == (20, 9, 3)


def test_rgb2ycbcr_bt601_studio_range():
    rgb = np.array([[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    ycc = P.rgb2ycbcr(rgb)
    np.testing.assert_allclose(ycc[0, 0], [235 / 255, 128 / 255, 128 / 255], atol=1e-12)
    np.testing.assert_allclose(ycc[0, 1], [16 / 255, 128 / 255, 128 / 255], atol=1e-12)
    np.testing.assert_allclose(ycc[0, 2], [(16 + 65.481) / 255, (128 - 37.797) / 255, (128 + 112) / 255], atol=1e-12)
    gray = np.full((1, 1, 3), 0.4)
    assert P.rgb2ycbcr(gray)[0, 0, 0] == pytest.approx(16 / 255 + 219 / 255 * 0.4)


def test_ycbcr_roundtrip(rng):
    rgb = rng.random((5, 6, 3))
    np.testing.assert_allclose(P.ycbcr2rgb(P.rgb2ycbcr(rgb)), rgb, atol=1e-12)


def test_im2uint8_rounds_half_up_and_saturates():
    x = np.array([0.5, 2.5, 254.5, -3, 300]) / 255
    np.testing.assert_array_equal(P.im2uint8(x), [1, 3, 255, 0, 255])  # np.round would give 0, 2, 254


def test_modcrop_and_shave():
    img = np.zeros((13, 10, 3))
    assert P.modcrop(img, 4).shape == (12, 8, 3)
    assert P.shave(np.zeros((12, 8)), 2).shape == (8, 4)


def test_psnr_known_value():
    a = np.zeros((10, 10))
    assert P.psnr(a, a + 0.1) == pytest.approx(20.0)


def test_ssim_constant_images_closed_form():
    a, b = np.full((20, 20), 0.5), np.full((20, 20), 0.6)
    c1 = 0.01**2
    assert P.ssim(a, b) == pytest.approx((2 * 0.5 * 0.6 + c1) / (0.25 + 0.36 + c1), rel=1e-12)
    assert P.ssim(a, a) == pytest.approx(1.0)


def test_ssim_matches_independent_gaussian_11x11_replicate(rng):
    a = rng.random((24, 31))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)

    def filt(x):  # radius 5 (11x11), sigma 1.5, replicate ('nearest') padding
        return ndimage.gaussian_filter(x, 1.5, mode="nearest", truncate=5 / 1.5)

    mu_a, mu_b = filt(a), filt(b)
    va, vb, cov = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2, filt(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    ref = np.mean((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2)))
    assert P.ssim(a, b) == pytest.approx(ref, rel=1e-10)

    # a 7x7 window (imgaussfilt's default size) gives a different number: the size matters
    def filt7(x):
        return ndimage.gaussian_filter(x, 1.5, mode="nearest", truncate=3 / 1.5)

    m7a, m7b = filt7(a), filt7(b)
    v7a, v7b, c7 = filt7(a * a) - m7a**2, filt7(b * b) - m7b**2, filt7(a * b) - m7a * m7b
    ref7 = np.mean((2 * m7a * m7b + c1) * (2 * c7 + c2) / ((m7a**2 + m7b**2 + c1) * (v7a + v7b + c2)))
    assert abs(P.ssim(a, b) - ref7) > 1e-4


@pytest.mark.parametrize("scale", [0.5, 0.25, 0.125, 1 / 3, 2.0, 3.0, 4.0, 0.7])
def test_imresize_gather_equals_the_sparse_matrix_product(scale, rng):
    """imresize (a gather, no SciPy) and resize_matrix (torch's training batches) are one computation."""
    for h, w in [(1, 1), (2, 3), (5, 7), (17, 12), (64, 48)]:
        img = rng.random((h, w))
        out_h, out_w = P.output_size(h, scale), P.output_size(w, scale)
        by_matrix = P.resize_matrix(w, out_w, scale) @ (P.resize_matrix(h, out_h, scale) @ img).T
        np.testing.assert_allclose(P.imresize(img, scale), by_matrix.T, rtol=0, atol=1e-15)
