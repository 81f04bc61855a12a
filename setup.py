"""The package build (pyproject.toml holds the metadata): the container's compiled init,
nucleus/init/nucleus-init, is built from nucleus/init/init.c, and the supervisor's keeper,
nucleus/init/nucleus-keeper, from nucleus/init/keeper.c, by the Makefile's `init` target when a
C compiler is there. A package built without one starts every container's PID 1 as the
interpreter (with a warning), and production mode refuses to run with it; without the keeper
the supervisor stays for the container's whole life.
"""

import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithInit(build_py):
    def run(self) -> None:
        try:
            subprocess.run(["make", "--no-print-directory", "init"], check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"warning: the container's compiled init was not built: {e}")
        super().run()


setup(cmdclass={"build_py": BuildWithInit})
