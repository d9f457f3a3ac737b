"""The batched engine: B images in one optimization are B independent runs."""

import dataclasses

import pytest
import torch

import dgp_toolkit
from dgp_toolkit.engine import CandidateCache, Job, RunOptions, run_batch, run_dgp

from tiny import make_preset, make_prior


@pytest.fixture(scope="module")
def prior():
    return make_prior()


def preset(**table):
    base = dict(iterations=[3, 3, 3], ft_num=[1, 2, 4], g_lr=[1e-3, 1e-3, 1e-3], z_lr=[1e-2, 1e-2, 1e-3],
                ftr_num=[3, 4, 5], weights={"discriminator": [1, 1, 1], "mse": [1, 1, 1], "nll": [0.02] * 3})
    base.update(table)
    return make_preset("blockwise", task="test", select_num=8, sample_std=0.3, **base)


def targets(n, spec="blur:sigma=1"):
    deg = dgp_toolkit.parse_degradation(spec)
    gen = torch.Generator().manual_seed(11)
    return deg, [deg.degrade(torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1) for _ in range(n)]


OPTIONS = RunOptions(precision="float32", check_every=1)


def test_a_batch_of_three_gives_each_image_its_single_run(prior):
    deg, ys = targets(3)
    jobs = [Job(ys[0], seed=0), Job(ys[1], seed=4), Job(ys[2], seed=0, class_index=3)]
    batched = run_batch(prior, deg, jobs, preset=preset(), options=OPTIONS)
    for job, res in zip(jobs, batched):
        single = run_dgp(prior, deg, job.target, preset=preset(), class_index=job.class_index,
                         options=OPTIONS.replace(seed=job.seed))
        assert res.class_index == single.class_index
        torch.testing.assert_close(res.z, single.z, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(res.image, single.image, rtol=1e-4, atol=1e-5)
        assert len(res.history) == len(single.history) == 9
        for a, b in zip(res.history, single.history):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6)
        for name, value in single.generator_state.items():
            torch.testing.assert_close(res.generator_state[name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert batched[2].class_index == 3


def test_images_with_one_seed_share_their_candidates(prior):
    deg, ys = targets(4)
    cache = CandidateCache()
    first = run_batch(prior, deg, [Job(y, seed=0) for y in ys[:2]], preset=preset(), options=OPTIONS, cache=cache)
    assert cache.computed == 1  # one draw and one scoring of the candidates for both images
    run_batch(prior, deg, [Job(y, seed=0) for y in ys[2:]], preset=preset(), options=OPTIONS, cache=cache)
    assert cache.computed == 1  # ... and for the next batch of the same folder
    run_batch(prior, deg, [Job(ys[0], seed=1)], preset=preset(), options=OPTIONS, cache=cache)
    assert cache.computed == 2  # another seed (the next of runs = N) draws its own
    alone = run_batch(prior, deg, [Job(ys[1], seed=0)], preset=preset(), options=OPTIONS)
    assert alone[0].class_index == first[1].class_index and alone[0].score == pytest.approx(first[1].score, rel=1e-5)


def test_an_image_that_goes_non_finite_stops_alone(prior):
    deg, ys = targets(3)
    wild = preset(iterations=[2, 30], ft_num=[1, 4], g_lr=[1e-4, 1e12], z_lr=[1e-3, 1e12], ftr_num=[5, 5],
                  weights={"discriminator": [1, 1], "mse": [1, 1]})
    calm = preset(iterations=[2, 30], ft_num=[1, 4], g_lr=[1e-4, 1e-4], z_lr=[1e-3, 1e-3], ftr_num=[5, 5],
                  weights={"discriminator": [1, 1], "mse": [1, 1]})
    # one image with a huge target: its loss (and only its) overflows under the wild rates
    huge = ys[1] * 1e30
    jobs = [Job(ys[0]), Job(huge), Job(ys[2])]
    mixed = run_batch(prior, deg, jobs, preset=calm, options=OPTIONS)
    assert mixed[1].stopped == "non_finite" and "non-finite" in mixed[1].message
    assert torch.isfinite(mixed[1].image).all()
    # the others ran to the end, unaffected: bit for bit what the same batch with a sane
    # second image gives (same shapes, same kernels; a single run of 32 steps may drift by
    # float reduction order, which Adam's normalised steps amplify)
    sane = run_batch(prior, deg, [Job(ys[0]), Job(ys[1]), Job(ys[2])], preset=calm, options=OPTIONS)
    assert sane[1].stopped == "done"
    for i in (0, 2):
        assert mixed[i].stopped == "done" and len(mixed[i].history) == 32
        assert torch.equal(mixed[i].image, sane[i].image) and torch.equal(mixed[i].z, sane[i].z)
        assert [h["loss"] for h in mixed[i].history] == [h["loss"] for h in sane[i].history]
    blown = run_batch(prior, deg, [Job(ys[0]), Job(ys[2])], preset=wild, options=OPTIONS)
    assert {r.stopped for r in blown} == {"non_finite"}


def test_early_stop_is_per_image(prior):
    deg, ys = targets(2)
    table = dict(iterations=[40], ft_num=[4], g_lr=[1e-3], z_lr=[1e-2], ftr_num=[5],
                 weights={"discriminator": [1], "mse": [1]})
    probe = run_batch(prior, deg, [Job(y) for y in ys], preset=preset(**table), options=OPTIONS)
    # a threshold between the two images' final mse: one stops early, the other runs on
    finals = sorted(r.history[-1]["mse"] for r in probe)
    threshold = (finals[0] + finals[1]) / 2
    stopping = dataclasses.replace(preset(**table), schedule=dataclasses.replace(preset(**table).schedule,
                                                                                early_stop_mse=threshold))
    res = run_batch(prior, deg, [Job(y) for y in ys], preset=stopping, options=OPTIONS)
    kinds = sorted(r.stopped for r in res)
    assert kinds == ["done", "early_stop"], kinds
    stopped = next(r for r in res if r.stopped == "early_stop")
    assert len(stopped.history) < 40 and stopped.history[-1]["mse"] < threshold


def test_a_loss_that_mixes_the_images_is_refused(prior):
    from dgp_toolkit.errors import DGPError
    from dgp_toolkit.registry import get_registry

    deg, ys = targets(2)
    registry = get_registry()
    mse = registry.create("loss", "mse")

    class Scalar:
        def __call__(self, state):
            return mse(state).mean()

    original = registry.create
    try:
        registry.create = lambda kind, name, **kw: Scalar() if (kind, name) == ("loss", "mse") else original(kind, name, **kw)
        with pytest.raises(DGPError, match=r"loss 'mse' returned shape \(\); a loss returns one value per image"):
            run_batch(prior, deg, [Job(y) for y in ys], preset=preset(), options=OPTIONS)
        run_batch(prior, deg, [Job(ys[0])], preset=preset(), options=OPTIONS)  # a batch of one takes a scalar
    finally:
        registry.create = original


def test_run_options_are_checked_once(prior):
    from dgp_toolkit.errors import DGPUsageError

    with pytest.raises(DGPUsageError, match="check_every"):
        RunOptions(check_every=0)
    with pytest.raises(DGPUsageError, match="seed"):
        RunOptions(seed=-1)
    with pytest.raises(DGPUsageError, match="runs"):
        RunOptions(runs=0)
    deg, ys = targets(1)
    with pytest.raises(DGPUsageError, match="at least one"):
        run_batch(prior, deg, [], preset=preset())


def test_a_fitted_blur_width_is_fitted_per_image_and_reported_per_stage(prior):
    deg = dgp_toolkit.parse_degradation("blur:sigma=auto")
    gen = torch.Generator().manual_seed(3)
    clean = [torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1 for _ in range(2)]
    ys = [dgp_toolkit.parse_degradation(f"blur:sigma={s},size=17").degrade(c) for s, c in zip((1.0, 3.0), clean)]
    jobs = [Job(y) for y in ys]
    batched = run_batch(prior, deg, jobs, preset=preset(), options=OPTIONS)
    for job, res in zip(jobs, batched):
        single = run_dgp(prior, deg, job.target, preset=preset(), options=OPTIONS)
        assert set(res.fitted) == {"blur.sigma"} and 0.3 <= res.fitted["blur.sigma"] <= 4.0
        assert res.fitted["blur.sigma"] == pytest.approx(single.fitted["blur.sigma"], rel=1e-4)
        assert len(res.fitted_stages) == 3 and res.fitted_stages[-1] == res.fitted
    # the two images' widths moved apart from the common start (2.0): each has its own
    assert batched[0].fitted["blur.sigma"] != batched[1].fitted["blur.sigma"]
    assert all(r.fitted["blur.sigma"] != 2.0 for r in batched)


def test_restore_fits_the_width_and_simulates_with_its_own_spec(prior):
    gen = torch.Generator().manual_seed(5)
    image = torch.rand(3, 32, 32, generator=gen) * 2 - 1
    res = dgp_toolkit.restore(image, ["blur:sigma=auto"], prior, preset=preset(), simulate_with="blur:sigma=2",
                              precision="float32")
    assert res.metrics is not None and set(res.fitted) == {"blur.sigma"}
    assert res.config["fitted"]["final"] == res.fitted and len(res.config["fitted"]["stages"]) == 3
    assert res.config["simulated_with"] == ["blur:sigma=2.0,size=9"]
    assert any(n.startswith("fitted with the image: blur.sigma = ") for n in res.notes)
    from dgp_toolkit.errors import DGPUsageError

    with pytest.raises(DGPUsageError, match="cannot simulate an observation with sigma=auto.*--simulate-with"):
        dgp_toolkit.restore(image, ["blur:sigma=auto"], prior, preset=preset(), simulate=True)
