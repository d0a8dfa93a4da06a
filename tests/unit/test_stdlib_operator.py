"""The package folder is called ``operator``; it must never shadow the standard library."""

import operator
import pathlib
import sysconfig

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_import_operator_is_the_standard_library() -> None:
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert pathlib.Path(operator.__file__).resolve().parent == stdlib
    assert operator.itemgetter(1)([0, 42]) == 42


def test_no_init_file_in_the_operator_folder() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
