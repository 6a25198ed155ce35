"""Word problems over finitely presented groups, generated exactly in code.

A *word* is a sequence of integer tokens over ``k`` generators:

* ``0`` is padding (the identity),
* ``1..k`` is generator ``g_i`` (token ``i``),
* ``k+1..2k`` is its inverse ``g_i^{-1}`` (token ``k+i``).

Every problem carries an explicit integer matrix representation of its generators
(``explicit_matrices``); the element of a word is the ordered product
``M[w_1] @ M[w_2] @ ... @ M[w_T]`` (reduced mod ``modulus`` where one is given), and the
label is an invariant read off that product. The same ordered-product convention is used
by :class:`equivariance.matrixnet.MatrixNet`, so tests can compare the two directly.

Problems:

* :class:`SymmetricWords` -- S_n from adjacent transpositions ``s_i = (i, i+1)``;
  label: the order of the permutation, the lcm of its cycle lengths. The label set (the lcms
  of all integer partitions of n) is found from partitions, never by enumerating S_n, so
  S_10 (the paper's group, 16 orders) is cheap.
* :class:`DihedralWords` -- D_m as a Coxeter group from two reflections ``r_1, r_2``
  with ``(r_1 r_2)^m = 1``; label: the element itself (2m classes).
* :class:`BraidWords` -- the Artin braid group B_n from the Artin generators ``sigma_i``;
  label: the trace of the reduced Burau matrix evaluated at ``t`` in the finite field F_p.
  Working mod p keeps the invariant exact for arbitrarily long words.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

PAD = 0


def sample_words(
    rng: np.random.Generator, alphabet: Sequence[int], n_words: int, min_len: int, max_len: int,
    pad_to: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Uniformly random words over ``alphabet`` with lengths uniform in ``[min_len, max_len]``.

    Returns ``(tokens, lengths)``: tokens (N, pad_to) right-padded with ``PAD``.
    """
    pad_to = max_len if pad_to is None else pad_to
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    if pad_to < max_len:
        raise ValueError(f"pad_to={pad_to} is shorter than max_len={max_len}")
    if n_words < 1:
        raise ValueError(f"n_words must be positive, got {n_words}")
    alphabet = np.asarray(alphabet, dtype=np.int64)
    if alphabet.size == 0 or np.any(alphabet == PAD):
        raise ValueError(f"alphabet must be non-empty and exclude the padding token, got {alphabet.tolist()}")
    lengths = rng.integers(min_len, max_len + 1, size=n_words)
    tokens = alphabet[rng.integers(0, len(alphabet), size=(n_words, pad_to))]
    tokens[np.arange(pad_to)[None, :] >= lengths[:, None]] = PAD
    return tokens, lengths.astype(np.int64)


def integer_partitions(n: int, largest: int | None = None) -> Iterator[tuple[int, ...]]:
    """All partitions of ``n`` as non-increasing tuples (the cycle types of S_n)."""
    largest = n if largest is None else largest
    if n == 0:
        yield ()
        return
    for first in range(min(n, largest), 0, -1):
        for rest in integer_partitions(n - first, first):
            yield (first,) + rest


def symmetric_group_orders(n: int) -> list[int]:
    """Sorted element orders occurring in S_n: lcms of the cycle types (p(10) = 42 partitions)."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    return sorted({math.lcm(*parts) for parts in integer_partitions(n)})


def permutation_orders(perms: np.ndarray) -> np.ndarray:
    """Orders of a batch of permutations given as image arrays (N, n): lcm of cycle lengths."""
    perms = np.asarray(perms, dtype=np.int64)
    n_perm, n = perms.shape
    rows = np.arange(n_perm)[:, None]
    cycle_len = np.zeros((n_perm, n), dtype=np.int64)
    power = perms.copy()
    for k in range(1, n + 1):  # cycle length of point j: least k with perm^k(j) = j
        newly = (cycle_len == 0) & (power == np.arange(n)[None, :])
        cycle_len[newly] = k
        power = perms[rows, power]
    return np.lcm.reduce(cycle_len, axis=1)


def inverse_token(token: int, n_generators: int) -> int:
    """The token of the inverse of ``token`` (padding stays padding)."""
    if token == PAD:
        return PAD
    return token + n_generators if token <= n_generators else token - n_generators


def invert_word(word: list[int], n_generators: int) -> list[int]:
    """Tokens of ``w^{-1}``: reverse the word and invert every letter."""
    return [inverse_token(t, n_generators) for t in reversed(word)]


def _modular_inverse_matrix(mat: np.ndarray, modulus: int | None) -> np.ndarray:
    """Exact inverse of an integer matrix over Z (unimodular) or over F_p."""
    if modulus is None:
        inv = np.linalg.inv(mat.astype(np.float64))
        rounded = np.rint(inv).astype(np.int64)
        if not np.allclose(inv, rounded):
            raise ValueError(f"matrix is not unimodular, no integer inverse: {mat.tolist()}")
        return rounded
    # over a finite field every invertible matrix has finite order, so M^{-1} = M^{ord-1}
    identity = np.eye(len(mat), dtype=np.int64)
    power = mat % modulus
    prev = identity
    for _ in range(modulus ** (len(mat) ** 2)):
        if np.array_equal(power, identity):
            return prev
        prev = power
        power = (power @ mat) % modulus
    raise ValueError(f"matrix is not invertible mod {modulus}: {mat.tolist()}")


@dataclass
class WordProblem:
    """Base class: generators as explicit integer matrices, a label read off products."""

    name: str = "word-problem"
    n_generators: int = 0
    modulus: int | None = None
    kind: str = "classification"
    _matrices: np.ndarray = field(init=False, repr=False)

    # -- to be provided by subclasses -------------------------------------------------
    def generator_matrices(self) -> np.ndarray:
        """(k, d, d) integer matrices of the generators ``g_1..g_k``."""
        raise NotImplementedError

    def relations(self) -> list[list[int]]:
        """Defining relators: words equal to the identity in the group."""
        raise NotImplementedError

    def label_products(self, products: np.ndarray) -> np.ndarray:
        """Map (N, d, d) explicit products to integer class labels in ``[0, n_classes)``."""
        raise NotImplementedError

    @property
    def n_classes(self) -> int:
        raise NotImplementedError

    # -- shared machinery --------------------------------------------------------------
    def __post_init__(self) -> None:
        gens = np.asarray(self.generator_matrices(), dtype=np.int64)
        inverses = np.stack([_modular_inverse_matrix(g, self.modulus) for g in gens])
        identity = np.eye(gens.shape[1], dtype=np.int64)[None]
        self._matrices = np.concatenate([identity, gens, inverses])

    @property
    def vocab_size(self) -> int:
        """Number of token ids including padding: ``2k + 1``."""
        return 2 * self.n_generators + 1

    @property
    def explicit_matrices(self) -> np.ndarray:
        """(2k+1, d, d): index 0 the identity, then generators, then their inverses."""
        return self._matrices

    def products(self, tokens: np.ndarray) -> np.ndarray:
        """Ordered products ``M[w_1] ... M[w_T]`` of the explicit matrices, (N, d, d)."""
        tokens = self._check_tokens(tokens)
        mats = self._matrices
        prod = np.broadcast_to(mats[0], (len(tokens),) + mats.shape[1:]).copy()
        for t in range(tokens.shape[1]):
            prod = np.einsum("nij,njk->nik", prod, mats[tokens[:, t]])
            if self.modulus is not None:
                prod %= self.modulus
        return prod

    def labels(self, tokens: np.ndarray) -> np.ndarray:
        """Exact class label of every word, (N,) int64."""
        return self.label_products(self.products(tokens)).astype(np.int64)

    @property
    def alphabet(self) -> list[int]:
        """Tokens random words are drawn from: every generator and inverse."""
        return list(range(1, self.vocab_size))

    @property
    def n_outputs(self) -> int:
        return self.n_classes

    def sample_words(
        self, rng: np.random.Generator, n_words: int, min_len: int, max_len: int, pad_to: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Uniformly random words over :attr:`alphabet`, lengths uniform in ``[min_len, max_len]``."""
        return sample_words(rng, self.alphabet, n_words, min_len, max_len, pad_to)

    def _check_tokens(self, tokens: np.ndarray) -> np.ndarray:
        return check_tokens(tokens, self.vocab_size, self.name)


def check_tokens(tokens: np.ndarray, vocab_size: int, name: str) -> np.ndarray:
    """``tokens`` as an (N, T) int64 array, or a ValueError naming the first token outside ``[0, vocab_size)``."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be (N, T), got shape {tokens.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        bad = tokens[(tokens < 0) | (tokens >= vocab_size)][0]
        raise ValueError(f"token {bad} out of range [0, {vocab_size}) for {name}")
    return tokens.astype(np.int64)


def matrix_order(products: np.ndarray, max_order: int) -> np.ndarray:
    """Smallest k >= 1 with P^k = I for every matrix in the batch (exact integers; brute force, for cross-checks)."""
    n, d, _ = products.shape
    identity = np.eye(d, dtype=products.dtype)
    order = np.zeros(n, dtype=np.int64)
    power = products.copy()
    for k in range(1, max_order + 1):
        done = (order == 0) & np.all(power == identity, axis=(1, 2))
        order[done] = k
        if np.all(order > 0):
            break
        power = np.einsum("nij,njk->nik", power, products)
    if np.any(order == 0):
        raise ValueError(f"some element has order above {max_order}")
    return order


@dataclass
class SymmetricWords(WordProblem):
    """S_n generated by adjacent transpositions; label = element order (as a class index).

    The order is the lcm of the cycle lengths of the permutation (:func:`permutation_orders`);
    the possible orders come from the partitions of n. Transpositions are involutions, so by
    default random words use the generators only (``sample_inverses=False``, as in the paper's
    S_10 data); inverse tokens are still valid input and mean the same transposition.
    """

    n: int = 5
    sample_inverses: bool = False
    name: str = "symmetric"

    def __post_init__(self) -> None:
        if self.n < 3:
            raise ValueError(f"S_n needs n >= 3 for a non-abelian problem, got n={self.n}")
        self.n_generators = self.n - 1
        self.orders: list[int] = symmetric_group_orders(self.n)
        super().__post_init__()

    @property
    def alphabet(self) -> list[int]:
        return list(range(1, self.vocab_size if self.sample_inverses else self.n_generators + 1))

    def generator_matrices(self) -> np.ndarray:
        mats = []
        for i in range(self.n - 1):
            perm = np.eye(self.n, dtype=np.int64)
            perm[[i, i + 1]] = perm[[i + 1, i]]
            mats.append(perm)
        return np.stack(mats)

    def relations(self) -> list[list[int]]:
        k = self.n_generators
        rels = [[i, i] for i in range(1, k + 1)]  # s_i^2 = 1
        rels += [[i, i + 1] * 3 for i in range(1, k)]  # (s_i s_{i+1})^3 = 1
        rels += [[i, j, i, j] for i in range(1, k + 1) for j in range(i + 2, k + 1)]  # far commutation
        return rels

    @property
    def n_classes(self) -> int:
        return len(self.orders)

    def permutations(self, tokens: np.ndarray) -> np.ndarray:
        """Image arrays (N, n) of the words' permutations (column j of the product matrix has its 1 in row perm[j])."""
        return self.products(tokens).argmax(axis=1)

    def element_orders(self, tokens: np.ndarray) -> np.ndarray:
        return permutation_orders(self.permutations(tokens))

    def label_products(self, products: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.orders, permutation_orders(products.argmax(axis=1)))


@dataclass
class DihedralWords(WordProblem):
    """D_m as the Coxeter group <r1, r2 | r1^2 = r2^2 = (r1 r2)^m = 1>; label = the element.

    Explicit representation: permutations of the m vertices of a regular m-gon,
    ``r1: j -> -j`` and ``r2: j -> 1 - j`` (mod m), so ``r1 r2`` is a rotation by one step.
    """

    m: int = 7
    name: str = "dihedral"

    def __post_init__(self) -> None:
        if self.m < 3:
            raise ValueError(f"D_m needs m >= 3, got m={self.m}")
        self.n_generators = 2
        super().__post_init__()

    def _vertex_permutation(self, image: list[int]) -> np.ndarray:
        perm = np.zeros((self.m, self.m), dtype=np.int64)
        perm[image, np.arange(self.m)] = 1  # column j has its 1 in row image[j]
        return perm

    def generator_matrices(self) -> np.ndarray:
        r1 = [(-j) % self.m for j in range(self.m)]
        r2 = [(1 - j) % self.m for j in range(self.m)]
        return np.stack([self._vertex_permutation(r1), self._vertex_permutation(r2)])

    def relations(self) -> list[list[int]]:
        return [[1, 1], [2, 2], [1, 2] * self.m]

    @property
    def n_classes(self) -> int:
        return 2 * self.m

    def label_products(self, products: np.ndarray) -> np.ndarray:
        # the element is fixed by where vertices 0 and 1 go: rotations keep their order
        image0 = products[:, :, 0].argmax(axis=1)
        image1 = products[:, :, 1].argmax(axis=1)
        is_rotation = (image1 - image0) % self.m == 1
        return np.where(is_rotation, image0, self.m + image0)


@dataclass
class BraidWords(WordProblem):
    """Artin braid group B_n; label = trace of the reduced Burau matrix at ``t`` over F_p.

    Reduced Burau (size n-1), with ``sigma_i`` acting on rows ``i-1, i, i+1``
    (1-indexed) as ``[[1, 0, 0], [t, -t, 1], [0, 0, 1]]``, truncated at the two ends.
    The trace is a class function, so the label is a conjugation invariant of the braid.
    """

    n: int = 4
    p: int = 3
    t: int = 2
    name: str = "braid"

    def __post_init__(self) -> None:
        if self.n < 3:
            raise ValueError(f"B_n needs n >= 3 strands for a non-abelian problem, got n={self.n}")
        if self.p < 2 or any(self.p % q == 0 for q in range(2, int(self.p**0.5) + 1)):
            raise ValueError(f"p must be a prime, got p={self.p}")
        if self.t % self.p == 0:
            raise ValueError(f"t must be a unit mod p, got t={self.t} with p={self.p}")
        self.n_generators = self.n - 1
        self.modulus = self.p
        super().__post_init__()

    def generator_matrices(self) -> np.ndarray:
        d, t = self.n - 1, self.t
        mats = []
        for i in range(d):  # 0-indexed sigma_{i+1}
            mat = np.eye(d, dtype=np.int64)
            mat[i, i] = -t
            if i > 0:
                mat[i, i - 1] = t
            if i < d - 1:
                mat[i, i + 1] = 1
            mats.append(mat % self.p)
        return np.stack(mats)

    def relations(self) -> list[list[int]]:
        k = self.n_generators
        rels = []
        for i in range(1, k):  # s_i s_{i+1} s_i = s_{i+1} s_i s_{i+1}
            lhs, rhs = [i, i + 1, i], [i + 1, i, i + 1]
            rels.append(lhs + invert_word(rhs, k))
        for i in range(1, k + 1):  # far commutation s_i s_j = s_j s_i
            for j in range(i + 2, k + 1):
                rels.append([i, j] + invert_word([j, i], k))
        return rels

    @property
    def n_classes(self) -> int:
        return self.p

    def label_products(self, products: np.ndarray) -> np.ndarray:
        return np.trace(products, axis1=1, axis2=2) % self.p


def make_problem(name: str, **kwargs) -> WordProblem:
    """Build a word problem by name: ``symmetric``, ``dihedral`` or ``braid``."""
    problems = {"symmetric": SymmetricWords, "dihedral": DihedralWords, "braid": BraidWords}
    if name not in problems:
        raise ValueError(f"unknown group problem {name!r}; known: {', '.join(problems)}")
    return problems[name](**kwargs)
