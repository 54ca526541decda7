"""Build celeris-asgi, compiling its hot modules with Cython when this machine can.

The modules listed in celeris_asgi/_compiled.py are plain Python that Cython
compiles in pure-Python mode (the ``.pxd`` beside each adds C types).  Without
Cython or a working C compiler, when compiling fails, or with
``CELERIS_NO_EXTENSIONS=1`` set at install time, they install as the pure
Python they are and work the same: the install never fails for want of a
compiler.  ``celeris --version`` says which core runs.  All other metadata is
in pyproject.toml.
"""

from __future__ import annotations

import os
import runpy
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

COMPILED_MODULES: tuple[str, ...] = runpy.run_path("celeris_asgi/_compiled.py")["COMPILED_MODULES"]
DISABLED = os.environ.get("CELERIS_NO_EXTENSIONS", "") not in ("", "0")


def say(message: str) -> None:
    """One line for the build log (``pip install -v`` or ``python -m build`` show it)."""
    print(f"celeris-asgi: {message}", file=sys.stderr, flush=True)


def remove_in_tree_extensions() -> None:
    """Delete this interpreter's in-place builds of the listed modules, which would shadow their source.

    An editable install that now installs pure Python must not leave an older
    compiled module in the tree, where it is imported before the ``.py``.
    """
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for module in COMPILED_MODULES:
        Path(module.replace(".", "/") + suffix).unlink(missing_ok=True)


def pure_python(reason: str) -> None:
    remove_in_tree_extensions()
    say(f"installing the pure-Python core ({reason}); it works the same, only slower")


class OptionalBuildExt(build_ext):
    """Cythonize and compile the listed modules; on any failure, fall back to installing them as Python."""

    def run(self) -> None:
        try:
            from Cython import __version__ as cython_version
            from Cython.Build import cythonize
        except ImportError:
            self.fall_back("Cython is not installed")
            return
        try:
            translated = cythonize(
                self.extensions,
                build_dir=os.path.join(self.build_temp, "cython"),
                # The .pxd files alone give C types: annotations stay Python type hints.
                compiler_directives={"language_level": 3, "annotation_typing": False},
                quiet=True,
            )
            for ext, c_ext in zip(self.extensions, translated, strict=True):
                ext.sources = c_ext.sources  # the C files, on the Extensions setuptools has prepared
            super().run()
        except Exception as exc:  # no compiler, a failing compiler or a Cython error: the same answer
            self.fall_back(f"compiling failed: {type(exc).__name__}: {exc}")
            return
        say(f"compiled {len(self.extensions)} modules with Cython {cython_version}")

    def fall_back(self, reason: str) -> None:
        """Install the listed modules as Python: no compiled copy in the wheel (a half-built or earlier build)."""
        for ext in self.extensions:
            Path(self.build_lib, self.get_ext_filename(ext.name)).unlink(missing_ok=True)
        self.extensions[:] = []  # nothing for an editable install to link into the tree
        pure_python(reason)


if DISABLED:
    pure_python("CELERIS_NO_EXTENSIONS is set")

setup(
    ext_modules=[]
    if DISABLED
    else [Extension(module, [module.replace(".", "/") + ".py"]) for module in COMPILED_MODULES],
    cmdclass={"build_ext": OptionalBuildExt},
)
