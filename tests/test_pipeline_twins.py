"""Code the two pipeline files share stays equal in both.

Each pipeline file ships alone into its model folders (trust_remote_code), so neither can import the other: a
method both need is written in each, the second one under `# Copied from <module>.<Class>.<method>`, as diffusers
marks its twins. This test is the check (diffusers' `utils/check_copies.py` does the same for its own).
"""

import importlib
import inspect
import re

import pytest

PIPELINE_MODULES = (
    "pipelines.conditional_ddpm.pipeline_conditional_ddpm",
    "pipelines.ddim_from_noise.pipeline_ddim_from_noise",
)
COPIED_FROM = re.compile(r"^\s*# Copied from (?P<module>[\w.]+)\.(?P<cls>\w+)\.(?P<name>\w+)\s*$")
DEF_NAME = re.compile(r"^\s*def (\w+)\(")


def copies(module_name: str) -> list[tuple[str, str, str, str]]:
    """(class of the copy, method, target module, target class) for every `# Copied from` of a module."""
    lines = inspect.getsource(importlib.import_module(module_name)).splitlines()
    found, current_class = [], None
    for index, line in enumerate(lines):
        if line.startswith("class "):
            current_class = re.match(r"class (\w+)", line).group(1)
        marker = COPIED_FROM.match(line)
        if marker:
            name = next(DEF_NAME.match(later).group(1) for later in lines[index + 1 :] if DEF_NAME.match(later))
            assert name == marker["name"], f"{module_name}: '# Copied from ...{marker['name']}' stands above {name}"
            found.append((current_class, name, marker["module"], marker["cls"]))
    return found


def method_source(module_name: str, class_name: str, name: str) -> str:
    member = inspect.getattr_static(getattr(importlib.import_module(module_name), class_name), name)
    return inspect.getsource(getattr(member, "__func__", member))


ALL_COPIES = [(module, *copy) for module in PIPELINE_MODULES for copy in copies(module)]


def test_the_shared_methods_are_marked():
    marked = {(cls, name) for _, cls, name, *_ in ALL_COPIES}
    assert {("DDIMFromNoisePipeline", "save_config"), ("DDIMFromNoisePipeline", "_dict_from_json_file")} <= marked


@pytest.mark.parametrize("module, cls, name, target_module, target_cls", ALL_COPIES)
def test_each_copy_equals_its_original(module, cls, name, target_module, target_cls):
    assert method_source(module, cls, name) == method_source(target_module, target_cls, name)
