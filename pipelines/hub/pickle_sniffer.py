"""Whether a file holds a pickle, judged by its bytes, whatever its name: what the publisher refuses to upload.

Unpickling runs code, so a pickle on the Hub is code for whoever loads it. A file counts as a pickle when its
bytes are one, or wrap one:

- a pickle stream: protocol 2-5 (what pickle, torch.save's legacy format, joblib and numpy write) starts with
  0x80 and the protocol number; protocol 0 and 1 streams are recognised by parsing them (`pickletools`) up to
  their STOP, when they import or call something;
- a zip archive with a pickle member (torch.save's format: `archive/data.pkl`; numpy's `.npz`) or a member
  that is one;
- a gzip, bzip2, xz or zlib stream (`.pkl.gz`, compressed joblib files) whose start is one;
- a numpy `.npy` array of objects (`np.save` pickles those).
"""

from __future__ import annotations

import bz2
import io
import lzma
import pickletools
import zipfile
import zlib
from pathlib import Path

# Enough of a stream to recognise what it is; a header never comes near this.
HEAD_BYTES = 1 << 16
# A zip inside a zip inside ...: deeper nesting is itself refused.
MAX_DEPTH = 3

_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "REDUCE", "BUILD"}
_NPY_MAGIC = b"\x93NUMPY"


def pickle_inside(path: Path) -> str | None:
    """Why `path` is (or wraps) a pickle, e.g. "a zip archive with archive/data.pkl", or None when it is not."""
    with open(path, "rb") as handle:
        if zipfile.is_zipfile(handle):
            handle.seek(0)
            return _zip_pickle(handle, depth=1)
        handle.seek(0)
        return _stream_pickle(handle.read(HEAD_BYTES), depth=1)


def _stream_pickle(head: bytes, depth: int) -> str | None:
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"a pickle (protocol {head[1]})"
    if head.startswith(_NPY_MAGIC):
        return "a numpy array of Python objects (stored as a pickle)" if _npy_holds_objects(head) else None
    if head.startswith(b"PK\x03\x04"):
        return _zip_pickle(io.BytesIO(head), depth) if _complete_zip(head) else "a zip archive (not readable whole)"
    inner = _decompressed_head(head)
    if inner is not None:
        name, data = inner
        if depth >= MAX_DEPTH:
            return f"{name} data nested {depth} deep"
        found = _stream_pickle(data, depth + 1)
        return f"{name} data holding {found}" if found else None
    return "a pickle (protocol 0 or 1)" if _old_protocol_pickle(head) else None


def _zip_pickle(handle, depth: int) -> str | None:
    try:
        with zipfile.ZipFile(handle) as archive:
            for member in archive.infolist():
                if member.is_dir():
                    continue
                if member.filename.lower().endswith((".pkl", ".pickle")):
                    return f"a zip archive with {member.filename}"
                if depth >= MAX_DEPTH:
                    return f"a zip archive nested {depth} deep"
                with archive.open(member) as opened:
                    head = opened.read(HEAD_BYTES)
                found = _stream_pickle(head, depth + 1)
                if found:
                    return f"a zip archive whose {member.filename} is {found}"
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError) as error:
        return f"a zip archive that cannot be read ({type(error).__name__})"
    return None


def _complete_zip(head: bytes) -> bool:
    return zipfile.is_zipfile(io.BytesIO(head))


def _decompressed_head(head: bytes) -> tuple[str, bytes] | None:
    """(format name, the first bytes of the decompressed stream) for gzip, bzip2, xz and zlib; else None."""
    if head.startswith(b"\x1f\x8b"):
        name, decompressor = "gzip", zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    elif head.startswith(b"BZh"):
        name, decompressor = "bzip2", bz2.BZ2Decompressor()
    elif head.startswith(b"\xfd7zXZ\x00"):
        name, decompressor = "xz", lzma.LZMADecompressor()
    elif len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        name, decompressor = "zlib", zlib.decompressobj()
    else:
        return None
    try:
        return name, decompressor.decompress(head, HEAD_BYTES)
    except (zlib.error, OSError, EOFError, lzma.LZMAError):
        return None


def _npy_holds_objects(head: bytes) -> bool:
    import numpy as np

    stream = io.BytesIO(head)
    try:
        major, _ = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        dtype = read_header(stream)[2]
    except (ValueError, SyntaxError, EOFError):
        return True  # a .npy header numpy cannot read: it may be anything, so it is not shown to be safe
    return dtype.hasobject


def _old_protocol_pickle(head: bytes) -> bool:
    """A protocol 0/1 pickle that imports or calls something: parsed op by op up to its STOP."""
    names = set()
    try:
        for opcode, _, _ in pickletools.genops(head):
            names.add(opcode.name)
            if opcode.name == "STOP":
                return bool(names & _CODE_OPCODES)
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError):
        return False
    return False
