"""Issue 19: triangulations of one shape, the coherent physical-optics response, and the neural simulators."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.integrate import dblquad
from scipy.spatial.transform import Rotation

from symgym.learn.tasks.mesh.task import QUICK, baselines, make_data, run_seed, sensitivity_db
from symgym.learn.tasks.mesh.models import build_simulator, collate, face_graph, pretrain_gae
from symgym.physics.mesh import (VARIANTS, Patch, PatchMesh, Shape, TriMesh, random_shape, refined, split_faces, subdivide,
                                  triangulate)
from symgym.physics.mesh_po import (POConfig, aspect_directions, plate_po_rcs, po_rcs, po_response, sphere_po_rcs,
                                    triangle_phase_integrals)

torch.set_num_threads(1)
DIRS = aspect_directions(16)
LAMBDA = POConfig().wavelength


def _sphere(radius: float) -> Shape:
    return Shape("ellipsoid", (("ellipsoid", (radius,) * 3, (0.0, 0.0, 0.0)),), tuple(map(tuple, np.eye(3))))


# ----------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("kind", ["box", "ellipsoid", "cylinder", "composite"])
def test_every_triangulation_is_a_closed_consistent_mesh_of_the_same_size(kind):
    shape = random_shape(np.random.default_rng(3), kind)
    ref = triangulate(shape, "fine").to_trimesh()
    for v in VARIANTS:
        m = triangulate(shape, v, seed=5).to_trimesh()
        assert m.is_watertight and m.is_winding_consistent, v
        assert m.volume > 0  # outward winding
        tol = 1e-9 if kind == "box" else 0.1
        assert abs(m.area - ref.area) / ref.area < tol, (v, m.area, ref.area)


@pytest.mark.parametrize("kind", ["ellipsoid", "cylinder"])
def test_remeshing_keeps_vertices_on_the_true_surface(kind):
    shape = random_shape(np.random.default_rng(11), kind)
    rot = np.asarray(shape.rotation)
    (part, size, centre), = shape.parts
    for v in ("fine", "remeshed", "flipped"):
        q, s = triangulate(shape, v, seed=2).vertices @ rot - np.array(centre), np.array(size)
        if part == "ellipsoid":
            d = np.abs(np.sqrt(((q / s) ** 2).sum(1)) - 1)
        else:
            d = np.minimum(np.abs(np.linalg.norm(q[:, :2], axis=1) - s[0]), np.abs(np.abs(q[:, 2]) - s[2]))
        assert d.max() < 1e-9, (v, d.max())


def test_random_remeshing_really_changes_the_triangulation():
    shape = random_shape(np.random.default_rng(0), "box")
    canon, flipped, remeshed = (triangulate(shape, v, seed=1) for v in ("canonical", "flipped", "remeshed"))
    assert len(remeshed.faces) > len(canon.faces)
    same = {tuple(sorted(f)) for f in canon.faces} & {tuple(sorted(f)) for f in flipped.faces}
    assert len(same) < 0.8 * len(canon.faces)


# ----------------------------------------------------------------------------- physical optics
@pytest.mark.parametrize("q", [(0.0, 0.0, 7.0), (20.0, 30.0, 0.0), (20.0, 0.0, 1.0), (45.0, 30.0, 4.0),
                               (2e-4, 3e-4, 0.0), (1e-4, 30.0, 0.0)])
def test_triangle_phase_integral_matches_numerical_quadrature(q):
    """Closed-form triangle Fourier transform vs adaptive quadrature, including nearly coincident nodes."""
    v = np.array([[0.1, -0.05, 0.02], [0.4, 0.0, 0.0], [0.05, 0.22, 0.03]])
    q = np.array([q])
    e1, e2 = v[1] - v[0], v[2] - v[0]
    jac = np.linalg.norm(np.cross(e1, e2))
    phase = lambda t, s: (v[0] + s * e1 + t * e2) @ q[0]  # noqa: E731
    re = dblquad(lambda t, s: np.cos(phase(t, s)), 0, 1, 0, lambda s: 1 - s, epsabs=1e-11)[0]
    im = dblquad(lambda t, s: np.sin(phase(t, s)), 0, 1, 0, lambda s: 1 - s, epsabs=1e-11)[0]
    got = triangle_phase_integrals(v, np.array([[0, 1, 2]]), q)[0, 0]
    assert abs(got - jac * (re + 1j * im)) < 1e-8 * jac


def _plate(side_u: float, side_v: float, levels: int, split_seed: int | None) -> TriMesh:
    v = np.array([[-side_u / 2, -side_v / 2, 0], [side_u / 2, -side_v / 2, 0], [side_u / 2, side_v / 2, 0],
                  [-side_u / 2, side_v / 2, 0]])
    mesh = PatchMesh(v, np.array([[0, 1, 2], [0, 2, 3]]), np.zeros(2, np.int64), [Patch("plane", (0, 0, 0), (0, 0, 0))])
    for _ in range(levels):
        mesh = subdivide(mesh)
    if split_seed is not None:
        mesh = split_faces(mesh, 0.5, np.random.default_rng(split_seed))
    return TriMesh(mesh.vertices, mesh.faces, "plate")


def test_flat_plate_rcs_matches_the_closed_form_in_every_triangulation():
    """A rectangle's PO RCS is exact (sinc^2 pattern) for 2 triangles, subdivided ones and random splits."""
    side_u, side_v = 0.6, 0.4
    rng = np.random.default_rng(0)
    d = rng.normal(size=(8, 3))
    d[:, 2] = np.abs(d[:, 2]) + 0.3
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    k2 = 4 * np.pi / LAMBDA
    exact = np.array([plate_po_rcs(side_u, side_v, x[2], k2 * x[0], k2 * x[1], LAMBDA) for x in d])
    assert exact.max() / exact.min() > 100  # the pattern really has lobes and nulls
    for levels, split in ((0, None), (2, None), (1, 3)):
        np.testing.assert_allclose(po_rcs(_plate(side_u, side_v, levels, split), d, LAMBDA), exact, rtol=1e-7)
    normal_incidence = po_rcs(_plate(side_u, side_v, 0, None), np.array([[0, 0, 1.0]]), LAMBDA)[0]
    assert normal_incidence == pytest.approx(4 * np.pi * (side_u * side_v) ** 2 / LAMBDA**2, rel=1e-10)


def test_box_response_is_the_same_in_every_triangulation():
    """Flat faces: the facet integrals are exact and additive, so the triangulation cannot matter."""
    shape = random_shape(np.random.default_rng(2), "box")
    ref = po_response(triangulate(shape, "canonical"), DIRS)
    for v in VARIANTS:
        np.testing.assert_allclose(po_response(triangulate(shape, v, seed=4), DIRS), ref, atol=1e-8)


def test_sphere_converges_to_the_closed_form_at_second_order():
    """Max error over 16 directions vs the PO sphere formula: shrinks ~4x per subdivision, < 1.5 % at level 3."""
    radius = 0.45
    exact = sphere_po_rcs(radius, LAMBDA)
    assert exact == pytest.approx(np.pi * radius**2, rel=0.1)  # close to the optical limit at k a ~ 11
    errs = [np.abs(po_rcs(refined(_sphere(radius), lv), DIRS, LAMBDA) / exact - 1).max() for lv in range(1, 5)]
    assert errs[2] < 0.015 and errs[3] < 0.005, errs
    assert all(b < 0.45 * a for a, b in zip(errs, errs[1:])), errs


def test_curved_shapes_depend_on_the_triangulation_and_converge_with_refinement():
    for kind in ("ellipsoid", "cylinder"):
        shape = random_shape(np.random.default_rng(7), kind)
        ref = po_response(refined(shape, 3), DIRS)
        rms = lambda m: float(np.sqrt(np.mean((po_response(m, DIRS) - ref) ** 2)))  # noqa: E731
        by_level = [rms(refined(shape, lv)) for lv in range(3)]
        assert all(b < 0.6 * a for a, b in zip(by_level, by_level[1:])), (kind, by_level)
        # Same resolution, different triangulation, different answer: coarse facets interfere differently.
        canon, remeshed = rms(triangulate(shape, "canonical")), rms(triangulate(shape, "remeshed", seed=1))
        assert by_level[0] > 0.3 and abs(canon - remeshed) > 0.02, (kind, by_level, canon, remeshed)


def test_response_rotates_with_the_shape():
    mesh = triangulate(random_shape(np.random.default_rng(4), "cylinder"), "canonical")
    rot = Rotation.random(random_state=5).as_matrix()
    turned = TriMesh(mesh.vertices @ rot.T, mesh.faces, mesh.variant)
    np.testing.assert_allclose(po_response(turned, DIRS @ rot.T), po_response(mesh, DIRS), atol=1e-8)


def test_bad_input_is_rejected_with_the_value_named():
    mesh = triangulate(random_shape(np.random.default_rng(0), "box"), "coarse")
    with pytest.raises(ValueError, match="'torus'"):
        random_shape(np.random.default_rng(0), "torus")
    with pytest.raises(ValueError, match="'wiggly'"):
        triangulate(random_shape(np.random.default_rng(0)), "wiggly")
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        po_response(mesh, np.ones((4, 2)))
    with pytest.raises(ValueError, match="-0.5"):
        po_rcs(mesh, DIRS, -0.5)
    with pytest.raises(ValueError, match="1.5"):
        POConfig(band=1.5)
    with pytest.raises(ValueError, match="direct\\+pretrain"):
        build_simulator("direct+pretrain", DIRS, 16, 1)
    with pytest.raises(ValueError, match="'mlp'"):
        build_simulator("mlp", DIRS, 16, 1)


# ----------------------------------------------------------------------------- simulators
def _graphs(variant: str = "coarse", n: int = 3, rot: np.ndarray | None = None):
    rng = np.random.default_rng(1)
    out = []
    for kind in ("box", "ellipsoid", "cylinder")[:n]:
        m = triangulate(random_shape(rng, kind), variant, seed=3)
        if rot is not None:
            m = TriMesh(m.vertices @ rot.T, m.faces, m.variant)
        out.append(face_graph(m, LAMBDA))
    return out


@pytest.mark.parametrize("name", ["direct", "graph", "token"])
def test_simulators_are_rotation_equivariant(name):
    """Rotating the meshes and the aspect directions together leaves every simulator's prediction unchanged."""
    torch.manual_seed(0)
    model = build_simulator(name, DIRS, 24, 2)
    model.embedding.init_codebook(collate(_graphs()), torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(collate(_graphs()))
        for trial in range(3):
            rot = Rotation.random(random_state=trial).as_matrix()
            model.directions.copy_(torch.as_tensor(DIRS @ rot.T, dtype=torch.float32))
            equivariance_error = (y - model(collate(_graphs(rot=rot)))).abs().max().item()
            # rotating only the mesh changes the answer (so the check above can fail)
            model.directions.copy_(torch.as_tensor(DIRS, dtype=torch.float32))
            mesh_only = (y - model(collate(_graphs(rot=rot)))).abs().max().item()
            assert equivariance_error < 1e-5 and mesh_only > 30 * equivariance_error + 1e-4, (name, trial)


def test_batching_does_not_mix_meshes_and_face_graphs_are_closed():
    graphs = _graphs("remeshed")
    for g in graphs:
        deg = torch.bincount(g.edges[1], minlength=len(g.feat))
        assert torch.all(deg == 3)  # closed manifold: every face has three edge-neighbours
    for name in ("direct", "graph", "token"):
        model = build_simulator(name, DIRS, 24, 2)
        with torch.no_grad():
            together = model(collate(graphs))
            alone = torch.cat([model(collate([g])) for g in graphs])
        assert torch.allclose(together, alone, atol=1e-4), name


def _unlabelled(n: int = 12):
    rng = np.random.default_rng(0)
    return [face_graph(triangulate(random_shape(rng, ("box", "ellipsoid", "cylinder")[i % 3]), VARIANTS[i % 5],
                                   seed=i), LAMBDA) for i in range(n)]


def test_graph_autoencoder_pretraining_learns_to_predict_links_and_features():
    torch.manual_seed(0)
    model = build_simulator("graph+pretrain", DIRS, 16, 2)
    log = pretrain_gae(model, _unlabelled(8), steps=50, batch_size=3, lr=5e-3, mask_ratio=0.3, seed=0)
    assert np.mean([r["link_accuracy"] for r in log[-10:]]) > 0.6  # chance is 0.5
    assert np.mean([r["recon"] for r in log[-10:]]) < 0.3 * np.mean([r["recon"] for r in log[:5]])


def test_token_embedding_is_a_codebook_vector_and_keeps_many_codes_alive():
    graphs = _unlabelled(8)

    def codes_alive(seed: int, restarts: bool):
        torch.manual_seed(seed)
        m = build_simulator("token+pretrain", DIRS, 16, 2, n_codes=32)
        if not restarts:
            m.embedding.RESTART_EVERY = 10**9
        pretrain_gae(m, graphs, steps=60, batch_size=3, lr=5e-3, mask_ratio=0.3, seed=seed)
        m.eval()
        with torch.no_grad():
            m.embedding(collate(graphs))  # codes used over every face of the 8 graphs
        return m, m.embedding.codes_used

    # dead-code restarts keep more of the codebook alive than plain VQ training does (4 seeds each: on one
    # seed the count is too noisy to threshold; with the normalised features 30 steps were too few for
    # restarts to revive codes on some seeds, 60 separate the two on 8 of 8 seeds tried)
    with_restarts = [codes_alive(s, True)[1] for s in range(4)]
    without = [codes_alive(s, False)[1] for s in range(4)]
    assert sum(with_restarts) > 1.5 * sum(without), (with_restarts, without)
    model = codes_alive(0, True)[0]
    model.eval()  # no restarts: the codebook stays put
    with torch.no_grad():
        h = model.embedding(collate(graphs[:2]))
    assert (h[:, None] - model.embedding.codebook[None]).norm(dim=-1).min(dim=1).values.max().item() < 1e-6


def test_sensitivity_measures_spread_across_triangulations():
    truth = np.zeros((4, 16))
    assert sensitivity_db(np.stack([truth] * 5)) == 0.0
    noisy = np.random.default_rng(0).normal(scale=2.0, size=(5, 4, 16))
    assert 1.5 < sensitivity_db(noisy) < 2.2


TEST_CFG = replace(QUICK, n_test_shapes=10, n_unlabelled=4, models=("direct",))


@pytest.fixture(scope="module")
def quick_data():
    return make_data(TEST_CFG, 0, absolute=True)


def test_baselines_on_the_quick_data(quick_data):
    b = baselines(quick_data)
    assert b["shape_constant_oracle"]["sensitivity_db"] < 1e-12
    assert b["shape_constant_oracle"]["rmse_db_canonical"] < b["area"]["rmse_db_canonical"]
    # the physics on the input mesh is itself triangulation sensitive, on curved shapes only
    phys = b["physics_on_mesh"]
    assert phys["sensitivity_db_by_kind"]["box"] < 1e-6
    assert phys["sensitivity_db"] > 0.1 and phys["rmse_db_by_variant"]["coarse"] > phys["rmse_db_by_variant"]["fine"]


def test_quick_simulator_beats_the_area_baseline_and_the_per_shape_constant_oracle(quick_data):
    """On held-out shapes (training triangulation) the learned response beats both by >= 1.5 dB RMS."""
    result, _ = run_seed(TEST_CFG, 0, log=False, data=quick_data)
    model = result["direct"]["rmse_db_canonical"]
    assert model < result["area"]["rmse_db_canonical"] - 1.5, result
    assert model < result["shape_constant_oracle"]["rmse_db_canonical"] - 1.5, result


def test_resolution_split_separates_retriangulation_from_resolution_change():
    from symgym.learn.tasks.mesh.task import evaluate, resolution_split

    rng = np.random.default_rng(0)
    truth = rng.normal(size=(6, 16))
    # predictions exact on every same-resolution mesh and 1 dB off on the coarse and fine ones
    pred = {v: truth + (1.0 if v in ("coarse", "fine") else 0.0) for v in VARIANTS}
    metrics = evaluate(pred, truth)
    split = resolution_split(metrics)
    assert split["same_resolution_gap_db"] == pytest.approx(0.0, abs=1e-12)
    assert split["resolution_gap_db"] == pytest.approx(1.0)
    assert metrics["sensitivity_db_same_resolution"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["sensitivity_db_resolution"] > 0.4


def test_mesh_ledger_reports_the_split_and_holm_adjusts_the_family():
    from symgym.learn.tasks.mesh.task import evidence

    rng = np.random.default_rng(1)
    per_seed = []
    for _ in range(5):
        run = {}
        for m in ("graph", "graph+pretrain"):
            base = 3.0 + rng.normal(0, 0.05)
            run[m] = {"rmse_db_other_triangulations": base + 1.5, "sensitivity_db": 2.0 + rng.normal(0, 0.1),
                      "sensitivity_db_same_resolution": 0.5 + rng.normal(0, 0.02),
                      "sensitivity_db_resolution": 3.0 + rng.normal(0, 0.1)}
        for b in ("area", "shape_constant_oracle"):
            run[b] = {"rmse_db_other_triangulations": 8.0 + rng.normal(0, 0.1)}
        per_seed.append(run)
    ev = evidence(per_seed, list(range(5)), ("graph", "graph+pretrain"))
    split = [e for e in ev if e["method"] == "same resolution"]
    assert [e["model"] for e in split] == ["graph", "graph+pretrain"] and all(e["holds"] is True for e in split)
    # pretraining is tested on the total, the same-resolution and the resolution sensitivity separately
    pre = [e["metric"] for e in ev if e["method"] == "graph+pretrain" and e["baseline"] == "graph"]
    assert {"sensitivity_db", "sensitivity_db_same_resolution", "sensitivity_db_resolution"} <= set(pre)
    assert all(e["holds"] is not True for e in ev if e["method"] == "graph+pretrain" and "sensitivity" in e["metric"])
    assert all(e["adjustment"] == f"Holm over {len(ev)} claims" for e in ev)


# ----------------------------------------------------------------------------- issue 35: features and pretraining data
def test_normalised_features_do_not_shift_with_resolution_but_absolute_ones_do():
    """On an ellipsoid at the coarse, canonical and fine resolutions, the mean normalised face and edge features
    agree (so a finer test mesh is not out of distribution), while the absolute log area moves by ~log 4 a level."""
    shape = random_shape(np.random.default_rng(5), "ellipsoid")
    means = {f: [(g.feat.mean(0), g.edge_feat.mean(0)) for g in
                 (face_graph(refined(shape, lv), LAMBDA, f) for lv in range(3))] for f in ("normalised", "absolute")}
    for (fa, ea), (fb, eb) in zip(means["normalised"], means["normalised"][1:]):
        assert (fa - fb).abs().max() < 0.06, (fa, fb)
        assert abs(ea[1] - eb[1]) < 0.1 * ea[1]  # discrete curvature converges under refinement
        assert (ea[2:] - eb[2:]).abs().max() < 0.05  # log edge length / gap relative to the mesh mean
    log_area = [f[0].item() for f, _ in means["absolute"]]
    assert np.allclose(np.diff(log_area), -np.log(4), atol=0.1), log_area
    with pytest.raises(ValueError, match="'raw'"):
        face_graph(refined(shape, 0), LAMBDA, "raw")


def test_pretraining_meshes_span_several_resolutions_and_triangulations():
    from symgym.learn.tasks.mesh.task import pretraining_mesh

    shape = random_shape(np.random.default_rng(2), "cylinder")
    n = {(lv, st): len(pretraining_mesh(shape, lv, st, np.random.default_rng(0)).faces)
         for lv in range(3) for st in ("regular", "flipped", "remeshed")}
    assert n[(1, "regular")] == 4 * n[(0, "regular")] and n[(2, "regular")] == 16 * n[(0, "regular")]
    assert all(n[(lv, "flipped")] == n[(lv, "regular")] < n[(lv, "remeshed")] for lv in range(3))
    regular, flipped = (pretraining_mesh(shape, 2, st, np.random.default_rng(0)) for st in ("regular", "flipped"))
    assert not np.array_equal(regular.faces, flipped.faces)
    data = make_data(replace(TEST_CFG, n_train_shapes=4, n_test_shapes=2, n_unlabelled=30), 0)
    sizes = {len(g.feat) for g in data.unlabelled}
    assert max(sizes) >= 8 * min(sizes)  # coarse and fine meshes both present


def test_absolute_feature_ablation_reads_the_same_meshes(quick_data):
    from symgym.learn.tasks.mesh.task import features_of

    assert features_of("graph-absolute") == ("graph", "absolute") and features_of("graph+pretrain")[1] == "normalised"
    train_abs, test_abs = quick_data.inputs("absolute")
    for a, b in zip(test_abs["fine"], quick_data.test["fine"]):
        assert torch.equal(a.edges, b.edges) and not torch.allclose(a.feat, b.feat)
    no_abs = make_data(replace(TEST_CFG, n_train_shapes=4, n_test_shapes=2), 0, unlabelled=False)
    assert no_abs.unlabelled == []
    with pytest.raises(ValueError, match="absolute"):
        no_abs.inputs("absolute")


def test_the_pretraining_finding_reads_an_unbounded_fieller_interval():
    """A ratio whose baseline mean is indistinguishable from zero has an unbounded interval (null ends in the JSON);
    the results' note says so instead of failing to format it."""
    from symgym.learn.tasks.mesh.task import finding

    entry = {"claim": "graph-autoencoder pretraining reduces the token simulator's resolution sensitivity",
             "holds": "inconclusive", "effect": "ratio", "effect_value": 1.02, "ci95": [None, None], "p_adjusted": 1.0,
             "n_seeds": 5}
    text = finding([entry])
    assert "95% CI [-inf, inf]" in text and "ratio 1.02" in text
