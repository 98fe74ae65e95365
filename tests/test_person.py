from pathlib import Path

import numpy as np
import pytest

from avatar_cam.errors import ModelError, PersonError
from avatar_cam.honesty.signing import sign_model
from avatar_cam.person import Person, list_persons, load_person, save_person


def _person(root: Path, name: str = "bob") -> Person:
    rng = np.random.default_rng(1)
    crop = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    photo = rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)
    neutral = rng.uniform(0, 64, (478, 3)).astype(np.float32)
    c2p = np.array([[1.0, 0, 10], [0, 1.0, 5]])
    return Person(name, root / name, photo, crop, neutral, c2p, {"sources": ["x.png"]})


def test_save_load_round_trip(tmp_path: Path) -> None:
    p = _person(tmp_path)
    save_person(p, tmp_path, sign=lambda tmp: sign_model(tmp, "bob"))
    q = load_person("bob", tmp_path)
    assert q.owner is not None and q.owner.name == "bob" and q.owner.is_local
    assert np.array_equal(q.crop, p.crop) and np.array_equal(q.photo, p.photo)
    assert np.array_equal(q.neutral, p.neutral)
    assert np.allclose(q.crop_to_photo, p.crop_to_photo)
    assert q.meta["sources"] == ["x.png"] and q.meta["version"] == 1
    assert list_persons(tmp_path) == ["bob"]
    # Saving again replaces atomically and leaves no temporary folders behind.
    save_person(p, tmp_path, sign=lambda tmp: sign_model(tmp, "bob"))
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bob"]


def test_unknown_person_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(PersonError, match="unknown person 'nobody'.*calibrate nobody"):
        load_person("nobody", tmp_path)


@pytest.mark.parametrize("name", ["", "../etc", ".hidden", "a/b", "x" * 65])
def test_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(PersonError, match="invalid person name"):
        load_person(name, tmp_path)


@pytest.mark.parametrize("damage", ["json", "neutral", "crop", "pickle"])
def test_damaged_person_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    save_person(_person(tmp_path), tmp_path)
    folder = tmp_path / "bob"
    if damage == "json":
        (folder / "person.json").write_text("{not json")
    elif damage == "neutral":
        np.save(folder / "neutral.npy", np.zeros((10, 3), np.float32))
    elif damage == "crop":
        (folder / "crop.png").write_bytes(b"\x89PNG truncated")
    else:  # a pickled object array must never be loaded
        np.save(folder / "neutral.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PersonError, match="bob"):
        load_person("bob", tmp_path, verify=False)


def test_unsigned_or_tampered_person_is_refused(tmp_path: Path) -> None:
    save_person(_person(tmp_path), tmp_path)
    with pytest.raises(ModelError, match="not signed"):
        load_person("bob", tmp_path)
    save_person(_person(tmp_path), tmp_path, sign=lambda tmp: sign_model(tmp, "bob"))
    (tmp_path / "bob" / "crop.png").write_bytes(b"swapped")
    with pytest.raises(ModelError, match="modified after it was signed.*crop.png"):
        load_person("bob", tmp_path)
