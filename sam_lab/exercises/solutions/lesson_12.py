"""Lesson 12, full-size models: does a checkpoint's contents match the MD5 prefix in its file name?"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..engine import CheckResult
from ..turns import Turn


def name_matches_md5(filename, contents):
    """True when the six hex digits at the end of ``filename`` (``sam_vit_b_01ec64.pth``) start the
    MD5 of ``contents`` (bytes)."""
    prefix = Path(filename).stem.rsplit("_", 1)[-1]  # "sam_vit_b_01ec64.pth" -> "01ec64"
    digest = hashlib.md5(contents).hexdigest()  # 32 lowercase hex digits
    return digest.startswith(prefix.lower())


# ---- likely mistakes

def _prefix(filename):
    return Path(filename).stem.rsplit("_", 1)[-1]


def _sha256(filename, contents):
    return hashlib.sha256(contents).hexdigest().startswith(_prefix(filename).lower())


def _last_digits(filename, contents):
    return hashlib.md5(contents).hexdigest().endswith(_prefix(filename).lower())


def _case_sensitive(filename, contents):
    return hashlib.md5(contents).hexdigest().startswith(_prefix(filename))


def _with_suffix(filename, contents):
    return hashlib.md5(contents).hexdigest().startswith(str(filename).rsplit("_", 1)[-1].lower())


MISTAKES = [
    ("you hashed with SHA-256: Meta's names carry the first six hex digits of the file's MD5 "
     "(hashlib.md5(contents).hexdigest())", _sha256),
    ("you compared the END of the digest: the six digits in the name are the FIRST six of the MD5", _last_digits),
    ("a name in capitals (SAM_VIT_B_01EC64.PTH) failed: hexdigest() is lowercase, so lower the name's digits "
     "before comparing", _case_sensitive),
    ("the prefix still carries the extension ('01ec64.pth'): take the last '_' part of the name WITHOUT "
     "its suffix (Path(filename).stem)", _with_suffix),
]


def _cases():
    good = b"the bytes of a checkpoint"
    md5 = hashlib.md5(good).hexdigest()
    sha = hashlib.sha256(good).hexdigest()
    return [
        ("a name that fits its file", (f"sam_vit_b_{md5[:6]}.pth", good)),
        ("the right name, other bytes (a damaged download)", (f"sam_vit_b_{md5[:6]}.pth", good + b"!")),
        ("a folder in front of the name", (f"checkpoints/sam_vit_l_{md5[:6]}.pth", good)),
        ("the name carries the SHA-256's first digits, not the MD5's", (f"sam_vit_h_{sha[:6]}.pth", good)),
        ("the name carries the MD5's last six digits", (f"sam_vit_b_{md5[-6:]}.pth", good)),
        ("the name in capitals", (f"SAM_VIT_B_{md5[:6].upper()}.PTH", good)),
    ]


def check_name_matches_md5(yours):
    name = "name_matches_md5"
    if not callable(yours):
        return CheckResult(name, False, f"✗ {name}: expected a function, got {type(yours).__name__}")
    cases = _cases()
    expected = [name_matches_md5(*args) for _, args in cases]
    got = []
    for label, args in cases:
        try:
            answer = yours(*args)
        except Exception as error:
            return CheckResult(name, False, f"✗ {name} ({label}): yours raised {type(error).__name__}: {error}")
        if not isinstance(answer, (bool, np.bool_)):
            return CheckResult(name, False, f"✗ {name} ({label}): return True or False, got {answer!r}")
        got.append(bool(answer))
    if got == expected:
        return CheckResult(name, True, f"✓ {name}: yours agrees with ours on {len(cases)} cases", 0.0)
    for explanation, mistaken in MISTAKES:  # the mistake whose answers are exactly yours
        if [bool(mistaken(*args)) for _, args in cases] == got:
            return CheckResult(name, False, f"✗ {name}: {explanation}")
    first = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
    return CheckResult(name, False, f"✗ {name} ({cases[first][0]}): yours said {got[first]}, "
                                    f"ours {expected[first]}")


TURNS = [
    Turn("name_matches_md5", "12", "check that a checkpoint's bytes fit the MD5 prefix in its file name",
         name_matches_md5, check=check_name_matches_md5),
]
