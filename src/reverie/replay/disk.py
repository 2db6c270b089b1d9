"""The replay's files: one chunk of one episode per ``.npz``, written atomically, and reading
them back for a resume (see ``reverie.replay.episodes`` for the protocol).

A chunk of ``length`` rows ``[T, ...]`` (one array per step key, ``np.savez_compressed``) is::

    ep<episode:06d>-<chunk:04d>-<first_global_step:012d>-<last_global_step:012d>-<length>.npz

``first``/``last`` are the global steps of its first and last row; the rows are contiguous
(``length = last − first + 1``) unless other workers' steps interleave with them.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reverie.errors import CheckpointError
from reverie.utils import atomic_write_bytes

__all__ = ["ChunkFile", "Recovered", "chunk_name", "read_directory", "read_npz", "write_chunk", "write_npz"]

_NAME = re.compile(r"ep(\d+)-(\d+)-(\d+)-(\d+)-(\d+)\.npz")
# Corrupt files: what np.load and the checks of read_npz raise.
_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)

Spec = dict[str, tuple[tuple[int, ...], np.dtype]]  # stored shape and dtype per key


@dataclass
class ChunkFile:
    """One file: ``length`` rows of episode ``episode``, the first at global step ``first``
    and the last at ``last`` (contiguous only when ``length == last − first + 1``)."""

    path: Path
    episode: int
    index: int
    first: int
    last: int
    length: int

    @classmethod
    def parse(cls, path: Path) -> ChunkFile | None:
        match = _NAME.fullmatch(path.name)
        if not match:
            return None
        episode, index, first, last, length = map(int, match.groups())
        # Rows have increasing global steps: one row sits at first == last, more span at least length steps.
        valid = (length == 1 and first == last) or 1 < length <= last - first + 1
        return cls(path, episode, index, first, last, length) if valid else None

    @property
    def contiguous(self) -> bool:
        """Whether the rows are the global steps ``first..last`` (no other worker's step between)."""
        return self.last - self.first + 1 == self.length


@dataclass
class Recovered:
    """An episode read back from its chunks: ``data[key]`` ``[T, ...]``, the global step of its
    last row and its files in chunk order."""

    id: int
    data: dict[str, np.ndarray]
    last_step: int
    files: list[Path]


def chunk_name(episode: int, index: int, first: int, last: int, length: int) -> str:
    """File name of ``length`` rows of an episode, the first at global step ``first``, the last at ``last``."""
    return f"ep{episode:06d}-{index:04d}-{first:012d}-{last:012d}-{length}.npz"


def write_chunk(directory: Path, episode: int, index: int, first: int, last: int,
                arrays: dict[str, np.ndarray]) -> Path:
    """Write chunk ``index`` of ``episode`` (rows ``[T, ...]``) into ``directory``; its path."""
    path = directory / chunk_name(episode, index, first, last, len(arrays["is_first"]))
    write_npz(path, arrays)
    return path


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def read_npz(path: Path, length: int, spec: Spec) -> dict[str, np.ndarray]:
    """Load a chunk and check it against its name and the keys already loaded."""
    with np.load(path, allow_pickle=False) as file:  # never unpickle: object arrays are refused
        part = {key: file[key] for key in file.files}
    if spec and {key: (v.shape[1:], v.dtype) for key, v in part.items()} != spec:
        raise ValueError("its keys, shapes or dtypes differ from the other episodes'")
    if any(len(value) != length for value in part.values()):
        raise ValueError(f"its arrays do not hold the {length} steps its name says")
    return part


def read_directory(directory: Path, upto_step: int | None, strict: bool) -> tuple[list[Recovered], Spec]:
    """The episodes in ``directory`` in id order, and the stored spec, as ``Replay.load`` says:
    steps at global index ``>= upto_step`` deleted (a straddling chunk cut), ``*.tmp`` leftovers
    deleted, corrupt chunks renamed ``*.corrupt``. Files change only once every chunk is read,
    so a refused (``strict``) read leaves the folder as it was."""
    stale = list(directory.glob("*.tmp"))  # pathlib's * also matches the hidden tmp names
    chunks: dict[int, list[ChunkFile]] = {}
    for path in sorted(directory.glob("ep*.npz")):
        chunk_file = ChunkFile.parse(path)
        if chunk_file is None:
            warnings.warn(f"replay: ignoring {path}: not a replay chunk name", stacklevel=3)
        elif upto_step is not None and chunk_file.first >= upto_step:
            stale.append(path)  # written after the checkpoint; the resumed run writes it again
        else:
            chunks.setdefault(chunk_file.episode, []).append(chunk_file)
    reader, episodes = _EpisodeReader(directory, upto_step, strict, stale), []
    for episode_id in sorted(chunks):  # a loop, not a comprehension: the warnings' stacklevel counts frames
        episode = reader.read(sorted(chunks[episode_id], key=lambda c: c.index))
        if episode is not None:
            episodes.append(episode)
    for path in stale:
        path.unlink(missing_ok=True)
    for path, part, straddling in reader.cuts:
        write_npz(path, part)
        straddling.unlink()  # only once the cut copy is safely on disk
    return episodes, reader.spec


class _EpisodeReader:
    """Reads episodes chunk by chunk, collecting the file changes ``read_directory`` makes after:
    ``cuts`` (new path, arrays, old path) and ``stale`` paths; ``spec`` is set by the first chunk read."""

    def __init__(self, directory: Path, upto_step: int | None, strict: bool, stale: list[Path]):
        self.directory, self.upto_step, self.strict, self.stale = directory, upto_step, strict, stale
        self.cuts: list[tuple[Path, dict[str, np.ndarray], Path]] = []
        self.spec: Spec = {}

    def read(self, chunks: list[ChunkFile]) -> Recovered | None:
        """Concatenate an episode's chunks; a corrupt or missing chunk ends the episode there
        (the chunks after it would leave a gap). A chunk straddling ``upto_step`` is cut in
        memory and its cut copy appended to ``cuts``, or, when its rows interleave with other
        workers', appended to ``stale``."""
        upto_step = self.upto_step
        parts, files, last = [], [], -1
        for chunk_file in chunks:
            part, problem = self._read_chunk(chunk_file, len(files), last)
            if problem:
                warnings.warn(f"replay: skipping {chunk_file.path}: {problem}", stacklevel=4)
                chunk_file.path.replace(chunk_file.path.with_name(chunk_file.path.name + ".corrupt"))
                continue
            path, last = chunk_file.path, chunk_file.last
            if upto_step is not None and chunk_file.last >= upto_step:  # straddles the checkpoint
                if not chunk_file.contiguous:
                    self._drop_straddling(chunk_file)
                    self.stale.append(chunk_file.path)
                    break  # the chunks after it start after upto_step: already stale
                part = {key: value[: upto_step - chunk_file.first] for key, value in part.items()}
                path = self.directory / chunk_name(chunk_file.episode, chunk_file.index, chunk_file.first,
                                                   upto_step - 1, upto_step - chunk_file.first)
                self.cuts.append((path, part, chunk_file.path))
                last = upto_step - 1
            self.spec = self.spec or {key: (value.shape[1:], value.dtype) for key, value in part.items()}
            parts.append(part)
            files.append(path)
        if not parts:
            return None
        data = {key: np.concatenate([p[key] for p in parts]) for key in self.spec}
        return Recovered(chunks[0].episode, data, last, files)

    def _read_chunk(self, chunk_file: ChunkFile, index: int, last: int) -> tuple[dict[str, np.ndarray] | None, str | None]:
        """The chunk's arrays, or the problem that skips it: not the ``index``-th chunk of its
        episode after global step ``last`` (one before it is missing), or corrupt (``strict``: raised)."""
        if chunk_file.index != index or chunk_file.first <= last:
            return None, "a chunk before it is missing or corrupt"
        try:
            return read_npz(chunk_file.path, chunk_file.length, self.spec), None
        except _READ_ERRORS as error:
            problem = f"corrupt ({type(error).__name__}: {error})"
            if self.strict:
                raise CheckpointError(
                    f"replay chunk {chunk_file.path} is {problem}; the checkpoint at step {self.upto_step} needs "
                    f"it. Restore it from a backup, or rename it to {chunk_file.path.name}.corrupt to resume "
                    "without the rest of its episode (the run then differs from an uninterrupted one)"
                ) from None
            return None, problem

    def _drop_straddling(self, chunk_file: ChunkFile) -> None:
        """An interleaved chunk with rows on both sides of ``upto_step`` (a checkpoint taken
        without ``flush()``): the global step of a row inside it is unknown, so which rows
        precede ``upto_step`` cannot be told and none is kept."""
        problem = (f"its rows interleave with other workers' steps and straddle the checkpoint at step "
                   f"{self.upto_step} (no flush() before it), so the rows before that step cannot be told apart")
        if self.strict:
            raise CheckpointError(f"replay chunk {chunk_file.path}: {problem}. Resume without strict to drop it "
                                  "and the rest of its episode (the run then differs from an uninterrupted one)")
        warnings.warn(f"replay: dropping {chunk_file.path}: {problem}; its episode ends at the chunk before",
                      stacklevel=5)
