"""MatrixNet layer, group word generators and the matrixnet task."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from symgym.equivariance.matrixnet import MatrixNet, MatrixNetConfig, MatrixRepresentation, ordered_product
from symgym.learn.tasks.matrixnet.group_words import (
    BraidWords,
    DihedralWords,
    SymmetricWords,
    invert_word,
    make_problem,
    matrix_order,
    symmetric_group_orders,
)
from symgym.learn.tasks.matrixnet.task import TaskConfig, train_model
from symgym.learn.tasks.matrixnet.baselines import LSTMClassifier, OneHotMLP, TransformerClassifier

torch.set_num_threads(1)

PROBLEMS = [SymmetricWords(n=5), DihedralWords(m=7), BraidWords(n=4, p=3, t=2), BraidWords(n=5, p=5, t=2)]


def _explicit_product(problem, word):
    mats = problem.explicit_matrices
    prod = np.eye(mats.shape[1], dtype=np.int64)
    for tok in word:
        prod = prod @ mats[tok]
        if problem.modulus:
            prod %= problem.modulus
    return prod


def _transposition_algebra(n_generators: int) -> torch.Tensor:
    """Skew A_i with exp(A_i) = P(s_i) (+) sign(s_i): an exact SO(n+1) rep of S_n (and of B_n via B_n -> S_n)."""
    n = n_generators + 1
    algebra = torch.zeros(n_generators, n + 1, n + 1, dtype=torch.float64)
    for i in range(n_generators):
        u = torch.zeros(n + 1, dtype=torch.float64)
        u[i], u[i + 1] = 2**-0.5, -(2**-0.5)
        v = torch.zeros(n + 1, dtype=torch.float64)
        v[n] = 1.0
        algebra[i] = math.pi * (torch.outer(u, v) - torch.outer(v, u))  # rotation by pi in span(u, v)
    return algebra


def _sign_extended_permutations(problem: SymmetricWords) -> np.ndarray:
    mats = problem.explicit_matrices.astype(np.float64)
    out = np.zeros((len(mats), mats.shape[1] + 1, mats.shape[1] + 1))
    out[:, :-1, :-1] = mats
    out[:, -1, -1] = np.round(np.linalg.det(mats))
    return out


# ------------------------------------------------------------------- group words --
@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: f"{p.name}-{p.n_generators}")
def test_explicit_matrices_satisfy_relations_and_inverses(problem):
    eye = np.eye(problem.explicit_matrices.shape[1], dtype=np.int64)
    for relator in problem.relations():
        assert np.array_equal(_explicit_product(problem, relator), eye), relator
    rng = np.random.default_rng(0)
    tokens, _ = problem.sample_words(rng, 20, 5, 12)
    for word in tokens:
        word = [int(t) for t in word if t]
        assert np.array_equal(_explicit_product(problem, word + invert_word(word, problem.n_generators)), eye)


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: f"{p.name}-{p.n_generators}")
def test_vectorised_products_match_loop(problem):
    tokens, lengths = problem.sample_words(np.random.default_rng(1), 50, 1, 15, pad_to=20)
    assert tokens.shape == (50, 20) and np.all((tokens != 0).sum(1) == lengths)
    prods = problem.products(tokens)
    for word, prod in zip(tokens, prods):
        assert np.array_equal(prod, _explicit_product(problem, [int(t) for t in word]))
    labels = problem.labels(tokens)
    assert labels.min() >= 0 and labels.max() < problem.n_classes


def test_labels_known_values():
    sym = SymmetricWords(n=5)
    # s1 is a transposition (order 2); s1 s2 a 3-cycle; s1 s3 two disjoint transpositions (order 2);
    # s1 s2 s3 s4 a 5-cycle; s1 s2 s4 a 3-cycle times a transposition (order 6)
    words = [[1, 0, 0, 0], [1, 2, 0, 0], [1, 3, 0, 0], [1, 2, 3, 4], [1, 2, 4, 0], [1, 5, 0, 0]]
    orders = [sym.orders[c] for c in sym.labels(np.array(words))]
    assert orders == [2, 3, 2, 5, 6, 1]

    dih = DihedralWords(m=7)
    # r1 r2 is a rotation by -1 step, so (r1 r2)^k is rotation (-k mod 7); single reflections are classes >= m
    labels = dih.labels(np.array([[1, 2, 0, 0], [1, 2, 1, 2], [1, 0, 0, 0], [2, 0, 0, 0]]))
    assert labels.tolist() == [6, 5, 7 + 0, 7 + 1]

    braid = BraidWords(n=4, p=3, t=2)
    # sigma_1 sigma_1^{-1} is the identity braid: trace = n - 1 = 3 = 0 mod 3
    # reduced Burau sigma_1 has trace -t + 2 = 0 mod 3; sigma_1^2 has trace t^2 + 2 = 6 = 0 mod 3
    assert braid.labels(np.array([[1, 4], [1, 0], [1, 1]])).tolist() == [0, 0, 0]
    # by hand: sigma_1 sigma_2 = [[0, -t, 1], [t, -t, 1], [0, 0, 1]], trace 1 - t = -1 = 2 mod 3;
    # trace is a class function, so the conjugate sigma_2 sigma_1 has the same label
    assert braid.labels(np.array([[1, 2, 0, 0], [2, 1, 0, 0], [3, 1, 2, 6]])).tolist() == [2, 2, 2]


def test_word_generators_reject_bad_input():
    sym = SymmetricWords(n=5)
    with pytest.raises(ValueError, match="token 9"):
        sym.labels(np.array([[1, 9]]))
    with pytest.raises(ValueError, match="min_len"):
        sym.sample_words(np.random.default_rng(0), 4, 5, 3)
    with pytest.raises(ValueError, match="p must be a prime"):
        BraidWords(p=4)
    with pytest.raises(ValueError, match="unknown group problem 'cyclic'"):
        make_problem("cyclic")


# ------------------------------------------------------------------ matrix layer --
@pytest.mark.parametrize("length", [1, 2, 7, 16, 33])
def test_ordered_product_matches_naive(length):
    gen = torch.Generator().manual_seed(length)
    mats = torch.randn(3, length, 4, 4, generator=gen, dtype=torch.float64)
    naive = torch.stack([torch.linalg.multi_dot(list(m)) if length > 1 else m[0] for m in mats])
    prod, log_scale = ordered_product(mats)
    assert torch.allclose(prod, naive) and torch.all(log_scale == 0)
    prod_n, log_n = ordered_product(mats, normalise=True)
    assert torch.allclose(prod_n * log_n.exp()[:, None, None], naive, rtol=1e-9)
    assert torch.allclose(prod_n.pow(2).mean((-1, -2)), torch.ones(3, dtype=torch.float64))


def test_word_product_matches_explicit_permutation_matrices():
    problem = SymmetricWords(n=5)
    rep = MatrixRepresentation(problem.n_generators, dim=6).double()
    rep.set_algebra(_transposition_algebra(problem.n_generators))
    explicit = _sign_extended_permutations(problem)
    tokens, _ = problem.sample_words(np.random.default_rng(2), 64, 1, 40)
    prods, _ = rep(torch.from_numpy(tokens))
    for word, prod in zip(tokens, prods):
        expected = np.eye(6)
        for tok in word:
            expected = expected @ explicit[tok]
        np.testing.assert_allclose(prod.detach().numpy(), expected, atol=1e-9)


def test_word_product_rotation_angles_add():
    rep = MatrixRepresentation(2, dim=2).double()
    angles = torch.tensor([0.3, -1.1], dtype=torch.float64)
    skew = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    rep.set_algebra(angles[:, None, None] * skew)
    tokens = torch.tensor([[1, 2, 3, 1, 4, 4, 0], [2, 2, 2, 0, 0, 0, 0]])
    signed = torch.tensor([0.0, 0.3, -1.1, -0.3, 1.1])  # angle of each token (pad, g1, g2, g1^-1, g2^-1)
    total = signed[tokens].sum(1).double()
    prods, _ = rep(tokens)
    expected = torch.stack([torch.stack([total.cos(), -total.sin()], -1), torch.stack([total.sin(), total.cos()], -1)], -2)
    assert torch.allclose(prods, expected, atol=1e-12)


@pytest.mark.parametrize("parametrisation", ["orthogonal", "general"])
def test_inverse_tokens_are_exact_inverses_on_long_words(parametrisation):
    torch.manual_seed(0)
    rep = MatrixRepresentation(3, dim=6, parametrisation=parametrisation, init_scale=0.5)
    problem = BraidWords(n=4)
    words, _ = problem.sample_words(np.random.default_rng(3), 8, 200, 200)
    # a general matrix product of 200 letters is too ill-conditioned for float32 cancellation,
    # so check w w^{-1} = 1 on 200-letter words only for orthogonal, on 10-letter words for general
    short = 200 if parametrisation == "orthogonal" else 10
    tokens = torch.tensor([list(w[:short]) + invert_word(list(w[:short]), 3) for w in words])
    with torch.no_grad():
        prods, log_scale = rep(tokens)
    full = prods * log_scale.exp()[:, None, None]
    assert torch.allclose(full, torch.eye(6).expand_as(full), atol=1e-3)
    # one-sided long words stay finite: orthogonal products stay orthogonal, general ones are rescaled
    with torch.no_grad():  # 2000-letter words
        one_sided, log_one = rep(torch.from_numpy(np.tile(words, 10)))
    assert torch.isfinite(one_sided).all() and torch.isfinite(log_one).all()
    if parametrisation == "orthogonal":
        gram = one_sided @ one_sided.transpose(-1, -2)
        assert torch.allclose(gram, torch.eye(6).expand_as(gram), atol=1e-3)  # float32 drift


def _dihedral_algebra(m: int) -> torch.Tensor:
    def cross_matrix(axis):
        x, y, z = axis
        return torch.tensor([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]], dtype=torch.float64)

    axes = [(1.0, 0.0, 0.0), (math.cos(math.pi / m), math.sin(math.pi / m), 0.0)]
    return torch.stack([math.pi * cross_matrix(a) for a in axes])  # rotations by pi about two axes


@pytest.mark.parametrize(
    "problem, algebra",
    [
        (SymmetricWords(n=5), _transposition_algebra(4)),
        (DihedralWords(m=7), _dihedral_algebra(7)),
        (BraidWords(n=4), _transposition_algebra(3)),  # B_4 -> S_4 -> SO(5) satisfies braid relations
    ],
    ids=["symmetric", "dihedral", "braid"],
)
def test_relation_check_zero_for_exact_representation_and_not_for_random(problem, algebra):
    rep = MatrixRepresentation(problem.n_generators, dim=algebra.shape[-1]).double()
    rep.set_algebra(algebra)
    assert rep.relation_errors(problem.relations()).max() < 1e-9
    torch.manual_seed(1)
    random_rep = MatrixRepresentation(problem.n_generators, dim=algebra.shape[-1])
    assert random_rep.relation_errors(problem.relations()).min() > 0.05


def test_relation_check_detects_a_single_broken_relation():
    rep = MatrixRepresentation(4, dim=6).double()
    algebra = _transposition_algebra(4)
    algebra[2] *= 0.9  # s_3 no longer squares to the identity
    rep.set_algebra(algebra)
    relators = SymmetricWords(n=5).relations()
    errors = rep.relation_errors(relators)
    # s_3^2 and both braid relations through s_3 break; (a pi-rotation conjugates the deformed
    # s_3 to its inverse, so the far commutations s_1 s_3 = s_3 s_1 happen to survive)
    broken = [relators.index(r) for r in ([3, 3], [2, 3] * 3, [3, 4] * 3)]
    intact = [i for i, r in enumerate(relators) if 3 not in r]
    assert errors[broken].min() > 0.01 and errors[intact].max() < 1e-9


def test_conjugate_generators_share_a_spectrum_and_keep_exact_inverses():
    torch.manual_seed(2)
    rep = MatrixRepresentation(3, dim=5, conjugate_generators=True).double()
    mats = rep.generator_matrices().detach()
    # A_i = U_i B U_i^T: every generator is orthogonally conjugate to exp(B), so equal singular
    # values of A_i and equal traces of every power of rho(g_i)
    svals = torch.linalg.svdvals(rep.algebra().detach())
    assert torch.allclose(svals, svals[0].expand_as(svals), atol=1e-10)
    traces = [torch.diagonal(torch.linalg.matrix_power(mats[1:4], k), dim1=-2, dim2=-1).sum(-1) for k in (1, 2, 3)]
    for tr in traces:
        assert torch.allclose(tr, tr[0].expand_as(tr), atol=1e-10)
    assert torch.allclose(mats[1] @ mats[4], torch.eye(5, dtype=torch.float64), atol=1e-12)
    with pytest.raises(ValueError, match="conjugate_generators"):
        rep.set_algebra(torch.zeros(3, 5, 5))


def test_layer_rejects_bad_input():
    with pytest.raises(ValueError, match="parametrisation 'unitary'"):
        MatrixRepresentation(2, parametrisation="unitary")
    rep = MatrixRepresentation(2, dim=3)
    with pytest.raises(ValueError, match=r"got range \[1, 7\]"):
        rep(torch.tensor([[1, 7]]))
    with pytest.raises(ValueError, match="skew-symmetric"):
        rep.set_algebra(torch.ones(2, 3, 3))


# ----------------------------------------------------------------------- training --
def test_short_training_lowers_loss_and_relation_error():
    problem = DihedralWords(m=5)
    tokens, _ = problem.sample_words(np.random.default_rng(4), 2000, 1, 8)
    labels = torch.from_numpy(problem.labels(tokens))
    torch.manual_seed(0)
    model = MatrixNet(MatrixNetConfig(problem.n_generators, problem.n_classes, dim=4))
    relators = problem.relations()
    rel_before = float(model.relation_loss(relators))
    curve = train_model(
        model, torch.from_numpy(tokens), labels, steps=150, batch_size=64, lr=1e-2, seed=0,
        regulariser=lambda: model.relation_loss(relators), relation_weight=0.1, log_every=25,
    )
    assert curve["loss"][-1] < 0.5 * curve["loss"][0]
    assert float(model.relation_loss(relators)) < 0.8 * rel_before


@pytest.mark.parametrize("name", ["mlp", "lstm", "transformer"])
def test_baselines_accept_padded_words_of_any_length(name):
    torch.manual_seed(0)
    model = {"mlp": OneHotMLP(7, 40, 5), "lstm": LSTMClassifier(7, 5), "transformer": TransformerClassifier(7, 5)}[name]
    tokens = torch.tensor([[1, 2, 3, 0, 0], [4, 5, 6, 1, 2]])
    assert model(tokens).shape == (2, 5)
    # padding is ignored: the same word padded further gives the same logits
    longer = torch.nn.functional.pad(tokens, (0, 10))
    assert torch.allclose(model(tokens), model(longer), atol=1e-5)
    if name == "mlp":
        with pytest.raises(ValueError, match="exceeds the MLP's max_len=40"):
            model(torch.ones(1, 41, dtype=torch.long))


def test_task_config_lengths_span_L_to_8L():
    cfg = TaskConfig()
    assert cfg.eval_lengths("symmetric") == [10 * m for m in range(1, 9)]
    assert cfg.eval_lengths("braid-jh")[0] == 6 and cfg.eval_lengths("braid-jh")[-1] == 48


@pytest.mark.slow
def test_quick_task_run_writes_results(tmp_path):
    from symgym.learn.tasks import run_task

    results = run_task("matrixnet", quick=True, out_dir=tmp_path)
    assert (tmp_path / "matrixnet.json").exists() and (tmp_path / "matrixnet.png").exists()
    for name in ("symmetric", "braid-jh"):
        res = results["problems"][name]
        assert set(res["models"]) == {"matrixnet-paper", "matrixnet-orthogonal-conj", "matrixnet-orthogonal",
                                      "mlp", "lstm", "transformer"}
        assert len(res["per_seed"]) == 2 and len(res["models"]["mlp"]["accuracy_mean"]) == len(res["eval_lengths"])
    # one ledger entry per (problem, other model): the paper model against 3 baselines and 2 ablations
    assert len(results["evidence"]) == 10
    assert (tmp_path / "matrixnet_tuning.json").exists() and (tmp_path / "matrixnet_tuning.png").exists()
    for name in ("symmetric", "braid-jh"):
        for model, chosen in results["tuning"]["summary"][name].items():
            assert results["problems"][name]["models"][model]["hparams"] == {k: chosen[k] for k in ("lr", "hidden", "steps")}
    assert {e["holds"] for e in results["evidence"]} == {"underpowered"}  # 2 seeds: no verdicts
    assert all(e["adjustment"] == "Holm over 10 claims" for e in results["evidence"])
    assert "balanced accuracy" in results["evidence"][0]["metric"] and "balanced_mean_2L_to_8L" in results["summary"]["symmetric"]["mlp"]


# ------------------------------------------------------------ S_10 by cycle type --
def test_orders_from_partitions_match_enumeration_and_the_paper_s10_classes():
    from itertools import permutations

    sym5 = SymmetricWords(n=5)
    brute = set()
    for perm in permutations(range(6)):
        seen, lengths = set(), []
        for start in range(6):
            length, j = 0, start
            while j not in seen:
                seen.add(j)
                j, length = perm[j], length + 1
            if length:
                lengths.append(length)
        brute.add(math.lcm(*lengths))
    assert symmetric_group_orders(6) == sorted(brute)
    assert sym5.orders == [1, 2, 3, 4, 5, 6]
    assert symmetric_group_orders(10) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 20, 21, 30]
    with pytest.raises(ValueError, match="n must be positive, got 0"):
        symmetric_group_orders(0)


def test_s10_order_from_cycle_type_matches_matrix_powers():
    sym = SymmetricWords(n=10)
    assert sym.n_classes == 16 and sym.alphabet == list(range(1, 10))  # generators only, as in the paper
    tokens, _ = sym.sample_words(np.random.default_rng(5), 300, 1, 60)
    assert tokens.max() <= 9
    orders = np.asarray(sym.orders)[sym.labels(tokens)]
    assert np.array_equal(orders, matrix_order(sym.products(tokens), 30))
    # a 10-cycle, and a 5-cycle times a 3-cycle times a transposition (order 30)
    long_cycle = np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9]])
    mixed = np.array([[1, 2, 3, 4, 6, 7, 9, 0, 0]])
    assert sym.orders[sym.labels(long_cycle)[0]] == 10 and sym.orders[sym.labels(mixed)[0]] == 30


# --------------------------------------------------------- B_3 JH multiplicities --
from symgym.learn.tasks.matrixnet.braid import BraidJordanHolderWords, word_to_tokens  # noqa: E402


def _jh(words):
    braid = BraidJordanHolderWords()
    longest = max(1, max(len(w) for w in words))
    tokens = np.zeros((len(words), longest), dtype=np.int64)
    for row, w in enumerate(words):
        tokens[row, : len(w)] = word_to_tokens(w)
    return braid.targets(tokens)


def test_jordan_holder_labels_of_short_braids():
    # columns: (S1, E, S2) in beta(P1), then in beta(P2). A spherical twist fixes its own object up
    # to shift; sigma_2 P1 is the stable extension E, sigma_2^{-1} P1 the unstable one (factors S1, S2)
    got = _jh([[], [1], [-1], [2], [-2]])
    assert got.tolist() == [
        [1, 0, 0, 0, 0, 1], [1, 0, 0, 1, 0, 1], [1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, 1], [1, 0, 1, 0, 0, 1],
    ]
    # length-2 values of the authors' released data (hn-data-a2.json)
    got = _jh([[-2, -2], [1, -2], [-1, 2], [1, 1]])
    assert got[:, :3].tolist() == [[1, 0, 2], [2, 0, 1], [1, 1, 0], [1, 0, 0]]
    assert got[3, 3:].tolist() == [2, 0, 1]


def test_jordan_holder_labels_are_functions_on_b3():
    braid = BraidJordanHolderWords()
    rng = np.random.default_rng(6)
    full_twist = [1, 2] * 3  # central in B_3: acts as a shift, so multiplicities do not change
    braid_rel = [1, 2, 1] + invert_word([2, 1, 2], 2)
    for _ in range(30):
        u = [int(t) for t in rng.integers(1, 5, rng.integers(0, 9))]
        v = [int(t) for t in rng.integers(1, 5, rng.integers(1, 9))]
        g = int(rng.integers(1, 5))
        variants = [u + v, u + [g] + invert_word([g], 2) + v, u + braid_rel + v, full_twist + u + v,
                    u + v + invert_word(full_twist, 2)]
        longest = max(len(w) for w in variants)
        tokens = np.array([w + [0] * (longest - len(w)) for w in variants])
        labels = braid.targets(tokens)
        assert (labels == labels[0]).all(), variants
    coeffs, offset = braid.burau(np.array([full_twist]))
    expected = np.zeros_like(coeffs)
    expected[0, 0, 0, offset + 3] = expected[0, 1, 1, offset + 3] = 1  # Burau(full twist) = t^3 I
    assert np.array_equal(coeffs, expected)
    with pytest.raises(ValueError, match="token 7 out of range"):
        braid.targets(np.array([[1, 7]]))


def test_jordan_holder_multiplicities_grow_on_a_pseudo_anosov_braid():
    # sigma_1 sigma_2^{-1} is pseudo-Anosov: multiplicities grow like golden_ratio^2 per repetition
    totals = [_jh([[1, -2] * k])[0].sum() for k in (4, 5, 6)]
    ratio = totals[2] / totals[1]
    assert totals[0] < totals[1] < totals[2] and abs(ratio - (1 + 5**0.5) ** 2 / 4) < 0.1


# --------------------------------------------------- the paper's MLP matrix block --
def _paper_rep(n_generators=2, dim=5):
    torch.manual_seed(3)
    return MatrixRepresentation(n_generators, dim=dim, parametrisation="mlp").double()


def test_paper_block_is_a_homomorphism_with_exact_inverses():
    rep = _paper_rep()
    assert not rep.normalises_products
    mats = rep.generator_matrices().detach()
    eye = torch.eye(5, dtype=torch.float64)
    assert torch.allclose(mats[1] @ mats[3], eye, atol=1e-12) and torch.allclose(mats[2] @ mats[4], eye, atol=1e-12)
    rng = np.random.default_rng(7)
    u = torch.from_numpy(rng.integers(1, 5, (6, 7)))
    v = torch.from_numpy(rng.integers(1, 5, (6, 5)))
    with torch.no_grad():
        rho_u, rho_v, rho_uv = rep(u)[0], rep(v)[0], rep(torch.cat([u, v], 1))[0]
        cancel = torch.tensor([list(w) + invert_word(list(w), 2) for w in u.tolist()])
        rho_cancel = rep(cancel)[0]
    assert torch.allclose(rho_uv, rho_u @ rho_v, atol=1e-10)
    assert torch.allclose(rho_cancel, eye.expand_as(rho_cancel), atol=1e-8)
    with pytest.raises(ValueError, match="parametrisation='mlp'"):
        rep.set_algebra(torch.zeros(2, 5, 5))


def test_paper_model_output_ignores_padding_and_cancelling_pairs():
    torch.manual_seed(4)
    model = MatrixNet(MatrixNetConfig(2, 6, dim=4, parametrisation="mlp")).double()
    tokens = torch.tensor([[1, 2, 4, 0], [3, 3, 2, 1]])
    inserted = torch.tensor([[1, 2, 2, 4, 4, 0, 0], [3, 1, 3, 3, 2, 1, 0]])  # g g^{-1} inserted, more padding
    assert torch.allclose(model(tokens), model(inserted), atol=1e-10)


def test_paper_model_learns_b3_multiplicities_and_the_braid_relation():
    braid = BraidJordanHolderWords()
    tokens, _ = braid.sample_words(np.random.default_rng(8), 3000, 1, 6)
    targets = torch.from_numpy(braid.targets(tokens)).float()
    torch.manual_seed(0)
    model = MatrixNet(MatrixNetConfig(2, 6, dim=4, parametrisation="mlp"))
    relators = braid.relations()
    rel_before = float(model.relation_loss(relators))
    curve = train_model(model, torch.from_numpy(tokens), targets, steps=200, batch_size=64, lr=1e-2, seed=0,
                        regulariser=lambda: model.relation_loss(relators), relation_weight=1.0, log_every=50)
    assert curve["loss"][-1] < 0.3 * curve["loss"][0]
    assert float(model.relation_loss(relators)) < 0.5 * rel_before
