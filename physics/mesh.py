"""Procedural shapes and many triangulations of each (the geometry side of the mesh-topology task).

The point of this module is to separate *shape* from *triangulation*. A :class:`Shape` is a
union of primitives (boxes, ellipsoids, cylinders) whose surfaces are split into analytic
*patches* (planes, an ellipsoid, a cylinder side). Every mesh face remembers its patch, so any
new vertex created while re-meshing (edge midpoints, face or edge splits) can be projected back
onto the true surface. Flat patches are therefore reproduced exactly by every triangulation;
curved patches are approximated, with an error that shrinks as O(h^2) with the edge length h.

The physical response of these meshes (coherent physical optics) lives in :mod:`physics.mesh_po`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh
from scipy.spatial.transform import Rotation

SHAPE_KINDS = ("box", "ellipsoid", "cylinder", "composite")
VARIANTS = ("canonical", "coarse", "fine", "flipped", "remeshed")


# ----------------------------------------------------------------------------- surface patches
@dataclass(frozen=True)
class Patch:
    """One analytic piece of a shape's surface, in the shape's canonical frame.

    ``kind`` is ``"plane"`` (points already on it stay there), ``"ellipsoid"`` (radial projection
    onto the ellipsoid with semi-axes ``size`` about ``center``) or ``"cylinder"`` (radial projection
    in x-y onto radius ``size[0]`` about ``center``, z kept).
    """

    kind: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]

    @property
    def curved(self) -> bool:
        return self.kind != "plane"

    def project(self, points: np.ndarray) -> np.ndarray:
        if self.kind == "plane":
            return points
        c = np.asarray(self.center)
        q = points - c
        if self.kind == "ellipsoid":
            scale = np.sqrt(((q / np.asarray(self.size)) ** 2).sum(axis=1, keepdims=True))
            return c + q / scale
        if self.kind == "cylinder":
            radial = np.linalg.norm(q[:, :2], axis=1, keepdims=True)
            q = q.copy()
            q[:, :2] *= self.size[0] / radial
            return c + q
        raise ValueError(f"unknown patch kind {self.kind!r}")


@dataclass
class PatchMesh:
    """A triangle mesh in a shape's canonical frame; ``face_patch[f]`` indexes ``patches``."""

    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64, outward (counter-clockwise) winding
    face_patch: np.ndarray  # (F,) int64
    patches: list[Patch] = field(default_factory=list)


def _face_normals(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals and areas of the faces."""
    cross = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    double_area = np.linalg.norm(cross, axis=1)
    return cross / np.maximum(double_area, 1e-300)[:, None], 0.5 * double_area


def _label_by_normal(mesh: trimesh.Trimesh, curved: Patch | None) -> tuple[np.ndarray, list[Patch]]:
    """Patch id per face: ``curved`` (id 0, if given) for non-flat faces, one plane per distinct flat normal."""
    patches: list[Patch] = [curved] if curved is not None else []
    plane_normals: list[np.ndarray] = []
    labels = np.empty(len(mesh.faces), dtype=np.int64)
    for f, n in enumerate(mesh.face_normals):
        # A cylinder's caps are its only flat faces; boxes are all flat; ellipsoids have none.
        flat = curved is None or (curved.kind == "cylinder" and abs(n[2]) > 1 - 1e-9)
        if not flat:
            labels[f] = 0
            continue
        match = [i for i, m in enumerate(plane_normals) if n @ m > 1 - 1e-9]
        if not match:
            plane_normals.append(n)
            patches.append(Patch("plane", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)))
            match = [len(plane_normals) - 1]
        labels[f] = match[0] + (1 if curved is not None else 0)
    return labels, patches


def primitive_mesh(kind: str, size: np.ndarray, center: np.ndarray) -> PatchMesh:
    """Coarse base triangulation (~50-80 faces) of one primitive with its patch labels."""
    size = np.asarray(size, dtype=float)
    center = np.asarray(center, dtype=float)
    if kind == "box":
        mesh = trimesh.creation.box(extents=2 * size)
        verts, faces = _midpoint_subdivide_plain(mesh.vertices, mesh.faces)  # 12 -> 48 faces
        mesh = trimesh.Trimesh(verts, faces, process=False)
        curved = None
    elif kind == "ellipsoid":
        mesh = trimesh.creation.icosphere(subdivisions=1)  # 80 faces
        mesh = trimesh.Trimesh(mesh.vertices * size, mesh.faces, process=False)
        curved = Patch("ellipsoid", tuple(center), tuple(size))
    elif kind == "cylinder":
        mesh = trimesh.creation.cylinder(radius=size[0], height=2 * size[2], sections=16)  # 64 faces
        curved = Patch("cylinder", tuple(center), (size[0], size[0], size[2]))
    else:
        raise ValueError(f"unknown primitive kind {kind!r}; expected 'box', 'ellipsoid' or 'cylinder'")
    labels, patches = _label_by_normal(mesh, curved)
    return PatchMesh(np.asarray(mesh.vertices, float) + center, np.asarray(mesh.faces, np.int64), labels, patches)


def _midpoint_subdivide_plain(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pm = PatchMesh(np.asarray(vertices, float), np.asarray(faces, np.int64), np.zeros(len(faces), np.int64),
                   [Patch("plane", (0, 0, 0), (0, 0, 0))])
    out = subdivide(pm)
    return out.vertices, out.faces


def merge(meshes: list[PatchMesh]) -> PatchMesh:
    """Disjoint union (components keep their own vertices and patches)."""
    verts, faces, labels, patches = [], [], [], []
    v_off = 0
    for m in meshes:
        verts.append(m.vertices)
        faces.append(m.faces + v_off)
        labels.append(m.face_patch + len(patches))
        patches.extend(m.patches)
        v_off += len(m.vertices)
    return PatchMesh(np.concatenate(verts), np.concatenate(faces), np.concatenate(labels), patches)


# ----------------------------------------------------------------------------- re-meshing operations
def _unique_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges (E, 2) and, for each face corner edge (F, 3), its edge id."""
    corner_edges = np.stack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], axis=1).reshape(-1, 2)
    edges, inverse = np.unique(np.sort(corner_edges, axis=1), axis=0, return_inverse=True)
    return edges, inverse.reshape(-1, 3)


def _project_new_points(points: np.ndarray, patch_ids: np.ndarray, patches: list[Patch]) -> np.ndarray:
    """Project points onto the patch each was created on (no-op for planes)."""
    out = points.copy()
    for pid in np.unique(patch_ids):
        patch = patches[int(pid)]
        if patch.curved:
            sel = patch_ids == pid
            out[sel] = patch.project(points[sel])
    return out


def _edge_patch(edges_of_faces: np.ndarray, face_patch: np.ndarray, patches: list[Patch], n_edges: int) -> np.ndarray:
    """Patch to project an edge's midpoint onto: a curved neighbour wins (rims lie on the curved side)."""
    edge_patch = np.full(n_edges, -1, dtype=np.int64)
    curved = np.array([p.curved for p in patches])
    flat_first = np.argsort(curved[face_patch], kind="stable")  # write flat faces first, curved overwrite
    for f in flat_first:
        edge_patch[edges_of_faces[f]] = face_patch[f]
    return edge_patch


def subdivide(mesh: PatchMesh) -> PatchMesh:
    """Midpoint (1-to-4) subdivision, new vertices projected onto the true surface."""
    v, f = mesh.vertices, mesh.faces
    edges, eof = _unique_edges(f)
    mids = 0.5 * (v[edges[:, 0]] + v[edges[:, 1]])
    mids = _project_new_points(mids, _edge_patch(eof, mesh.face_patch, mesh.patches, len(edges)), mesh.patches)
    m = eof + len(v)  # midpoint vertex ids of edges (01, 12, 20)
    a, b, c = f[:, 0], f[:, 1], f[:, 2]
    m01, m12, m20 = m[:, 0], m[:, 1], m[:, 2]
    new_faces = np.concatenate([
        np.stack([a, m01, m20], 1), np.stack([m01, b, m12], 1),
        np.stack([m20, m12, c], 1), np.stack([m01, m12, m20], 1),
    ])
    return PatchMesh(np.concatenate([v, mids]), new_faces, np.tile(mesh.face_patch, 4), mesh.patches)


def flip_edges(mesh: PatchMesh, fraction: float, rng: np.random.Generator) -> PatchMesh:
    """Flip a random, non-conflicting ``fraction`` of the edges that can be flipped safely.

    An edge is flipped only between two faces of the same patch, and only when both new triangles
    keep the orientation of the old ones and are not slivers. On planes this keeps the surface
    exactly; on curved patches it moves it by O(h^2).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    v, f = mesh.vertices, mesh.faces.copy()
    edges, eof = _unique_edges(f)
    owners: dict[int, list[tuple[int, int]]] = {}
    for face in range(len(f)):
        for corner in range(3):
            owners.setdefault(int(eof[face, corner]), []).append((face, corner))
    normals, _ = _face_normals(v, f)
    used = np.zeros(len(f), dtype=bool)
    candidates = rng.permutation(len(edges))[: int(round(fraction * len(edges)))]
    for e in candidates:
        own = owners.get(int(e), [])
        if len(own) != 2:
            continue
        (f1, c1), (f2, c2) = own
        if used[f1] or used[f2] or mesh.face_patch[f1] != mesh.face_patch[f2]:
            continue
        # f1 = (a, b, x) with edge a->b at corner c1; f2 holds b->a and opposite vertex y.
        a, b, x = f[f1, c1], f[f1, (c1 + 1) % 3], f[f1, (c1 + 2) % 3]
        y = f[f2, (c2 + 2) % 3]
        new = np.array([[x, y, b], [y, x, a]])
        new_n, new_area = _face_normals(v, new)
        ref = normals[f1] + normals[f2]
        old_area = _face_normals(v, f[[f1, f2]])[1].sum()
        if np.any(new_n @ ref <= 0.5 * np.linalg.norm(ref)) or new_area.min() < 0.05 * old_area:
            continue
        f[f1], f[f2] = new
        used[f1] = used[f2] = True
    return PatchMesh(v.copy(), f, mesh.face_patch.copy(), mesh.patches)


def split_faces(mesh: PatchMesh, fraction: float, rng: np.random.Generator) -> PatchMesh:
    """Split a random ``fraction`` of faces 1-to-3 at a random interior point (projected to the surface)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    v, f = mesh.vertices, mesh.faces
    chosen = rng.random(len(f)) < fraction
    idx = np.flatnonzero(chosen)
    bary = rng.dirichlet(np.full(3, 4.0), size=len(idx))  # concentrated away from the edges
    pts = np.einsum("nk,nkd->nd", bary, v[f[idx]])
    pts = _project_new_points(pts, mesh.face_patch[idx], mesh.patches)
    p = np.arange(len(v), len(v) + len(idx))
    a, b, c = f[idx, 0], f[idx, 1], f[idx, 2]
    new_faces = np.concatenate([f[~chosen], np.stack([a, b, p], 1), np.stack([b, c, p], 1), np.stack([c, a, p], 1)])
    labels = np.concatenate([mesh.face_patch[~chosen], np.tile(mesh.face_patch[idx], 3)])
    return PatchMesh(np.concatenate([v, pts]), new_faces, labels, mesh.patches)


def smooth_tangential(mesh: PatchMesh, step: float, rng: np.random.Generator) -> PatchMesh:
    """Randomly slide vertices that lie inside one patch along it (changes triangle shapes, not the surface)."""
    v, f = mesh.vertices.copy(), mesh.faces
    normals, _ = _face_normals(v, f)
    vertex_patches: dict[int, set[int]] = {}
    for face, tri in enumerate(f):
        for vert in tri:
            vertex_patches.setdefault(int(vert), set()).add(int(mesh.face_patch[face]))
    movable = np.array([len(vertex_patches.get(i, ())) == 1 for i in range(len(v))])
    edges, _ = _unique_edges(f)
    h = np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1).mean()
    incident = [[] for _ in range(len(v))]
    for face, tri in enumerate(f):
        for vert in tri:
            incident[vert].append(face)
    for i in rng.permutation(np.flatnonzero(movable)):
        faces_i = incident[i]
        n = normals[faces_i].mean(0)
        n /= np.linalg.norm(n)
        delta = rng.normal(size=3) * step * h
        delta -= (delta @ n) * n
        old = v[i].copy()
        patch = mesh.patches[next(iter(vertex_patches[i]))]
        v[i] = patch.project((old + delta)[None])[0]
        new_n, new_a = _face_normals(v, f[faces_i])
        if np.any((new_n * normals[faces_i]).sum(1) < 0.5) or new_a.min() < 1e-3 * h * h:
            v[i] = old  # the move would fold or collapse a triangle
    return PatchMesh(v, f.copy(), mesh.face_patch.copy(), mesh.patches)


def remesh_random(mesh: PatchMesh, rng: np.random.Generator) -> PatchMesh:
    """Irregular re-triangulation: random 1-to-3 splits, then random flips, then tangential jitter."""
    out = split_faces(mesh, 0.35, rng)
    out = flip_edges(out, 0.6, rng)
    return smooth_tangential(out, 0.15, rng)


# ----------------------------------------------------------------------------- shapes and their triangulations
@dataclass(frozen=True)
class Shape:
    """A procedural shape: primitives ``(kind, half-size, centre)`` in a canonical frame, then a rotation."""

    kind: str
    parts: tuple[tuple[str, tuple[float, float, float], tuple[float, float, float]], ...]
    rotation: tuple[tuple[float, float, float], ...]  # 3x3, rows

    @property
    def curved(self) -> bool:
        return any(part[0] != "box" for part in self.parts)

    def base_mesh(self) -> PatchMesh:
        return merge([primitive_mesh(k, np.array(s), np.array(c)) for k, s, c in self.parts])


def random_shape(rng: np.random.Generator, kind: str | None = None) -> Shape:
    """Draw a shape that fits inside the unit ball, with a uniformly random orientation."""
    if kind is None:
        kind = SHAPE_KINDS[rng.integers(len(SHAPE_KINDS))]
    if kind not in SHAPE_KINDS:
        raise ValueError(f"unknown shape kind {kind!r}; expected one of {SHAPE_KINDS}")

    def primitive(k: str, scale: float) -> tuple[float, float, float]:
        s = rng.uniform(0.25, 0.55, size=3) * scale
        if k == "cylinder":
            s[1] = s[0]  # circular cross-section
        return tuple(float(x) for x in s)

    if kind == "composite":
        # Two overlapping primitives: the z-buffer hides the buried surface, so the response is the union's.
        k1, k2 = rng.choice(["box", "ellipsoid", "cylinder"], size=2)
        s1, s2 = primitive(str(k1), 0.8), primitive(str(k2), 0.6)
        offset = rng.normal(size=3)
        offset *= 0.35 / np.linalg.norm(offset)
        parts = ((str(k1), s1, tuple(-0.5 * offset)), (str(k2), s2, tuple(0.5 * offset)))
    else:
        parts = ((kind, primitive(kind, 1.2), (0.0, 0.0, 0.0)),)
    rot = Rotation.random(random_state=int(rng.integers(2**31))).as_matrix()
    return Shape(kind, parts, tuple(tuple(float(x) for x in row) for row in rot))


@dataclass
class TriMesh:
    """A triangulation of a shape in the world frame (what a neural simulator reads)."""

    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64
    variant: str

    def face_normals_areas(self) -> tuple[np.ndarray, np.ndarray]:
        return _face_normals(self.vertices, self.faces)

    def to_trimesh(self) -> trimesh.Trimesh:
        return trimesh.Trimesh(self.vertices, self.faces, process=False)


def triangulate(shape: Shape, variant: str, seed: int = 0) -> TriMesh:
    """One of several triangulations of the same surface.

    ``canonical``: the base mesh subdivided once; ``coarse``: the base mesh; ``fine``: subdivided
    twice; ``flipped``: canonical with random edge flips; ``remeshed``: canonical with random face
    splits, flips and tangential vertex jitter. Random variants are reproducible from ``seed``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown triangulation variant {variant!r}; expected one of {VARIANTS}")
    rng = np.random.default_rng(seed)
    mesh = shape.base_mesh()
    if variant != "coarse":
        mesh = subdivide(mesh)
    if variant == "fine":
        mesh = subdivide(mesh)
    elif variant == "flipped":
        mesh = flip_edges(mesh, 0.7, rng)
    elif variant == "remeshed":
        mesh = remesh_random(mesh, rng)
    rot = np.asarray(shape.rotation)
    return TriMesh(mesh.vertices @ rot.T, mesh.faces.copy(), variant)


def refined(shape: Shape, levels: int) -> TriMesh:
    """The base mesh subdivided ``levels`` times (new vertices on the true surface), in the world frame.

    Level 0 is the ``coarse`` variant, 1 ``canonical``, 2 ``fine``; higher levels are for convergence
    studies and reference responses (faces grow 4x per level).
    """
    if not 0 <= levels <= 6:
        raise ValueError(f"levels must be in 0..6, got {levels}")
    mesh = shape.base_mesh()
    for _ in range(levels):
        mesh = subdivide(mesh)
    return TriMesh(mesh.vertices @ np.asarray(shape.rotation).T, mesh.faces.copy(), f"level{levels}")
