"""Ships data_schemas/ (the source of truth, at the repository root) inside the wheel as ssl_modal/schemas/."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithSchemas(build_py):
    def run(self):
        super().run()
        shutil.copytree(
            Path(__file__).parent / "data_schemas", Path(self.build_lib) / "ssl_modal" / "schemas", dirs_exist_ok=True
        )


setup(cmdclass={"build_py": BuildWithSchemas})
