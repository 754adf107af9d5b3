"""The Slicer extension's layout, its architecture rules, and its Slicer-side helpers — without Slicer.

* Layout: every file a module or ``vfmlab`` ships is listed in its CMakeLists.txt (Slicer installs
  only listed files, so an unlisted file works in a checkout and is missing from the extension), the
  ExtensionsIndex entry matches the top-level CMakeLists.txt, the sample data is installed beside
  ``vfmlab``.
* Architecture: only ``vfmlab/mrml`` imports ``slicer``; nothing in ``vfmlab`` touches Slicer's GUI
  (``qt``, ``ctk``, ``slicer.util``, ``slicer.app``); the module files stay thin and never load torch
  (or any package the user installs later) while Slicer discovers modules; the ``.ui`` files and the
  code that uses them agree.
* Helpers: the plain-Python parts of ``VFMVolumeLabLib`` / ``SegmentationToolsLib`` against real
  MRML from the slicer-core wheel and the bundled sample data.

Every checker has a negative test on a synthetic input, so a checker that stopped seeing problems
would fail too.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = ("VFMVolumeLab", "SegmentationTools")
EXTENSION_JSON = REPO / "VFMVolumeLab.json"
SAMPLE_DATA = REPO / "Resources" / "SampleData"

for _module in MODULES:  # the module folders are on sys.path inside Slicer too
    if str(REPO / _module) not in sys.path:
        sys.path.insert(0, str(REPO / _module))


# ---------------------------------------------------------------------------------------------
# A small CMake reader: commands, quoted/unquoted arguments, comments, set() and ${VAR} expansion
# ---------------------------------------------------------------------------------------------

_COMMAND = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def _cmake_tokens(text: str, start: int) -> tuple[list[tuple[str, bool]], int]:
    """Arguments of the command whose ``(`` ends at ``start``; returns ``([(arg, quoted)], end)``."""
    args: list[tuple[str, bool]] = []
    depth, i, current, n = 1, start, "", len(text)

    def flush():
        nonlocal current
        if current:
            args.append((current, False))
            current = ""

    while i < n:
        c = text[i]
        if c == "#":
            flush()
            while i < n and text[i] != "\n":
                i += 1
            continue
        if c == '"':
            flush()
            i += 1
            value = ""
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    value += text[i + 1]
                    i += 2
                    continue
                value += text[i]
                i += 1
            args.append((value, True))
            i += 1
            continue
        if c == "(":
            depth += 1
            current += c
        elif c == ")":
            depth -= 1
            if depth == 0:
                flush()
                return args, i + 1
            current += c
        elif c.isspace():
            flush()
        else:
            current += c
        i += 1
    raise ValueError("unbalanced parentheses in CMake text")


def _strip_line_comments(text: str) -> str:
    """Drop ``#`` comments that start outside quoted strings (enough for this project's files)."""
    out = []
    for line in text.splitlines():
        quoted = False
        for index, char in enumerate(line):
            if char == '"':
                quoted = not quoted
            elif char == "#" and not quoted:
                line = line[:index]
                break
        out.append(line)
    return "\n".join(out)


def read_cmake(text: str, variables: dict[str, str] | None = None) -> list[tuple[str, list[str]]]:
    """Commands in order, with ``${VAR}`` expanded from earlier ``set()`` calls (control flow ignored)."""
    variables = dict(variables or {})
    text = _strip_line_comments(text)
    commands = []
    position = 0
    while True:
        match = _COMMAND.search(text, position)
        if match is None:
            return commands
        raw, position = _cmake_tokens(text, match.end())
        expanded: list[str] = []
        for value, quoted in raw:
            for _ in range(10):  # nested references such as ${${NAME}_SCRIPTS}
                new = re.sub(r"\$\{([A-Za-z0-9_]+)\}", lambda m: variables.get(m.group(1), m.group(0)), value)
                if new == value:
                    break
                value = new
            expanded.extend([value] if quoted else [part for part in value.split(";") if part])
        name = match.group(1).lower()
        if name == "set" and expanded:
            variables[expanded[0]] = ";".join(expanded[1:])
        commands.append((name, expanded))


def cmake_calls(path: Path, command: str) -> list[list[str]]:
    return [args for name, args in read_cmake(path.read_text()) if name == command.lower()]


def cmake_variables(path: Path) -> dict[str, list[str]]:
    return {args[0]: args[1:] for name, args in read_cmake(path.read_text()) if name == "set" and args}


def keyword_values(args: list[str], keyword: str, keywords: set[str]) -> list[str]:
    """The arguments after ``keyword`` up to the next keyword."""
    values, active = [], False
    for arg in args:
        if arg in keywords:
            active = arg == keyword
            continue
        if active:  # a quoted "${LIST}" is one argument that the macro splits at ';'
            values.extend(part for part in arg.split(";") if part)
    return values


SCRIPTED_KEYWORDS = {"NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS", "WITH_SUBDIR", "VERBOSE"}
CTK_KEYWORDS = {"TARGET_NAME", "SCRIPTS", "RESOURCES", "SOURCE_DIR", "DESTINATION_DIR", "INSTALL_DIR",
                "NO_INSTALL_SUBDIR", "GLOBAL_TARGET"}
MODULE_FILE_SUFFIXES = {".py", ".ui", ".png", ".json", ".svg", ".jpg", ".jpeg"}


def shipped_files(folder: Path, suffixes: set[str] | None, skip_dirs: tuple[str, ...] = ()) -> set[str]:
    """Files under ``folder`` that an installed extension needs, relative POSIX paths."""
    found = set()
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if not path.is_file() or "__pycache__" in relative.parts or relative.parts[0] in skip_dirs:
            continue
        if path.name.startswith(".") or path.name == "CMakeLists.txt" or path.suffix == ".pyc":
            continue
        if suffixes is None or path.suffix.lower() in suffixes:
            found.add(relative.as_posix())
    return found


def listing_problems(folder: Path, scripts: list[str], resources: list[str], on_disk: set[str]) -> list[str]:
    """What is wrong between a CMake file list and the files on disk (empty list: nothing)."""
    problems = []
    listed = set(scripts) | set(resources)
    for name in sorted(on_disk - listed):
        problems.append(f"{name}: not listed in {folder.name}/CMakeLists.txt (it would be missing from the extension)")
    for name in sorted(listed - on_disk):
        if not (folder / name).is_file():
            problems.append(f"{name}: listed in {folder.name}/CMakeLists.txt but does not exist")
    problems += [f"{name}: a .py file belongs in SCRIPTS, not RESOURCES" for name in resources if name.endswith(".py")]
    problems += [f"{name}: only .py files belong in SCRIPTS" for name in scripts if not name.endswith(".py")]
    problems += [f"{name}: listed twice" for name in {n for n in scripts + resources if (scripts + resources).count(n) > 1}]
    return problems


def test_cmake_reader_reads_lists_variables_quotes_and_comments():
    text = """
    set(MODULE_NAME Foo)  # a comment with ${MODULE_NAME} and (parentheses
    set(SCRIPTS_LIST ${MODULE_NAME}.py "${MODULE_NAME}Lib/a b.py")
    # slicerMacroBuildScriptedModule(NAME Ignored)
    slicerMacroBuildScriptedModule(NAME ${MODULE_NAME} SCRIPTS ${SCRIPTS_LIST} RESOURCES x.png WITH_GENERIC_TESTS)
    """
    calls = [args for name, args in read_cmake(text) if name == "slicermacrobuildscriptedmodule"]
    assert len(calls) == 1
    assert keyword_values(calls[0], "SCRIPTS", SCRIPTED_KEYWORDS) == ["Foo.py", "FooLib/a b.py"]
    assert keyword_values(calls[0], "RESOURCES", SCRIPTED_KEYWORDS) == ["x.png"]
    assert "WITH_GENERIC_TESTS" in calls[0]


def test_listing_check_reports_unlisted_missing_and_misplaced_files(tmp_path):
    for name in ("Mod.py", "ModLib/helper.py", "Resources/Icons/Mod.png", "Testing/test_x.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    on_disk = shipped_files(tmp_path, MODULE_FILE_SUFFIXES, skip_dirs=("Testing",))
    assert on_disk == {"Mod.py", "ModLib/helper.py", "Resources/Icons/Mod.png"}
    problems = listing_problems(tmp_path, ["Mod.py", "Gone.py"], ["ModLib/helper.py"], on_disk)
    text = "\n".join(problems)
    assert "Resources/Icons/Mod.png: not listed" in text
    assert "Gone.py: listed" in text and "does not exist" in text
    assert "ModLib/helper.py: a .py file belongs in SCRIPTS" in text
    assert listing_problems(tmp_path, ["Mod.py", "ModLib/helper.py"], ["Resources/Icons/Mod.png"], on_disk) == []


# ---------------------------------------------------------------------------------------------
# Layout of the extension
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_module_cmake_lists_every_shipped_file(module):
    folder = REPO / module
    calls = cmake_calls(folder / "CMakeLists.txt", "slicerMacroBuildScriptedModule")
    assert len(calls) == 1, f"{module}/CMakeLists.txt must call slicerMacroBuildScriptedModule once"
    args = calls[0]
    assert keyword_values(args, "NAME", SCRIPTED_KEYWORDS) == [module]
    assert "WITH_GENERIC_TESTS" in args
    scripts = keyword_values(args, "SCRIPTS", SCRIPTED_KEYWORDS)
    resources = keyword_values(args, "RESOURCES", SCRIPTED_KEYWORDS)
    on_disk = shipped_files(folder, MODULE_FILE_SUFFIXES, skip_dirs=("Testing",))
    assert f"{module}.py" in scripts and f"Resources/UI/{module}.ui" in resources
    assert f"Resources/Icons/{module}.png" in resources
    problems = listing_problems(folder, scripts, resources, on_disk)
    assert not problems, "\n".join(problems)
    unittests = cmake_calls(folder / "CMakeLists.txt", "slicer_add_python_unittest")
    assert ["SCRIPT", f"{module}.py"] in unittests, "the module's Test class must be registered with ctest"


def test_vfmlab_cmake_lists_every_file_of_the_core_library():
    folder = REPO / "vfmlab"
    calls = cmake_calls(folder / "CMakeLists.txt", "ctkMacroCompilePythonScript")
    assert len(calls) == 1
    args = calls[0]
    scripts = keyword_values(args, "SCRIPTS", CTK_KEYWORDS)
    resources = keyword_values(args, "RESOURCES", CTK_KEYWORDS)
    on_disk = shipped_files(folder, None)  # .py, .json and any other data file
    problems = listing_problems(folder, scripts, resources, on_disk)
    assert not problems, "every vfmlab file must be listed in vfmlab/CMakeLists.txt:\n" + "\n".join(problems)
    destination = keyword_values(args, "DESTINATION_DIR", CTK_KEYWORDS)
    install = keyword_values(args, "INSTALL_DIR", CTK_KEYWORDS)
    assert destination == ["${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/vfmlab"]
    assert install == ["${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/vfmlab"]
    # Without NO_INSTALL_SUBDIR CTK installs the folder itself into INSTALL_DIR: .../vfmlab/vfmlab.
    assert "NO_INSTALL_SUBDIR" in args


def test_top_level_cmake_follows_the_extension_template():
    path = REPO / "CMakeLists.txt"
    commands = read_cmake(path.read_text())
    names = [name for name, _ in commands]
    assert names[0] == "cmake_minimum_required" and commands[0][1] == ["VERSION", "3.16.3...3.19.7", "FATAL_ERROR"]
    subdirectories = [args[0] for name, args in commands if name == "add_subdirectory"]
    assert subdirectories == ["vfmlab", "VFMVolumeLab", "SegmentationTools"]
    includes = [args[0] for name, args in commands if name == "include"]
    assert includes == ["${Slicer_USE_FILE}", "${Slicer_EXTENSION_GENERATE_CONFIG}", "${Slicer_EXTENSION_CPACK}"]
    assert ["Slicer", "REQUIRED"] in [args for name, args in commands if name == "find_package"]
    assert names.index("find_package") < names.index("add_subdirectory")


@pytest.mark.parametrize("folder, variable", [("SampleData", "VFMLAB_SAMPLE_DATA_FILES"),
                                              ("VolumeRendering", "VFMLAB_VOLUME_RENDERING_FILES")])
def test_resource_folders_are_copied_and_installed_beside_vfmlab(folder, variable):
    path = REPO / "CMakeLists.txt"
    listed = cmake_variables(path)[variable]
    assert sorted(listed) == sorted(shipped_files(REPO / "Resources" / folder, None)), f"list every Resources/{folder} file"
    assert [folder, *listed] in cmake_calls(path, "vfmlab_add_resource_folder")  # read_cmake expands ${variable}
    installs = [args for args in cmake_calls(path, "install") if args and args[0] == "FILES"]
    destinations = [keyword_values(args, "DESTINATION", {"FILES", "DESTINATION", "COMPONENT"}) for args in installs]
    assert ["${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/Resources/${folder}"] in destinations
    copies = cmake_calls(path, "configure_file")
    assert any(args[1].startswith("${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/Resources/${folder}/")
               for args in copies), "the build tree needs the resources too (tests run from it)"


def test_vfmlab_finds_its_resource_folders_relative_to_itself():
    # The same relative location in the source, build and install trees.
    import vfmlab
    from vfmlab.render.presets import presets_dir
    from vfmlab.sample_data import sample_data_dir

    assert Path(vfmlab.__file__).resolve().parents[1] / "Resources" / "SampleData" == SAMPLE_DATA
    assert sample_data_dir().resolve() == SAMPLE_DATA.resolve()
    assert (presets_dir() / "presets.xml").resolve() == (REPO / "Resources" / "VolumeRendering" / "presets.xml").resolve()


# The ExtensionsIndex catalog entry schema v1.0.1 (Slicer/Slicer: Schemas/), which forbids other keys.
CATALOG_SCHEMA_KEYS = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                       "build_subdirectory", "enabled", "tier"}
CATALOG_REQUIRED = {"$schema", "category", "scm_url"}
CATALOG_SCHEMA_URL = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json"


# Some of the categories the ExtensionsIndex's check accepts (scripts/check_description_files.py,
# ACCEPTED_EXTENSION_CATEGORIES); any other one fails its review, "Artificial Intelligence" included.
ACCEPTED_CATEGORIES = {"Analysis", "Quantification", "Rendering", "Segmentation", "Utilities", "Informatics"}


def catalog_entry_problems(entry: dict, cmake: dict[str, list[str]], project: str, json_name: str) -> list[str]:
    problems = []
    if entry.get("category") not in ACCEPTED_CATEGORIES:
        problems.append(f"category {entry.get('category')!r} is not one the ExtensionsIndex accepts")
    problems += [f"unknown key '{key}' (schema v1.0.1 allows {sorted(CATALOG_SCHEMA_KEYS)})"
                 for key in sorted(set(entry) - CATALOG_SCHEMA_KEYS)]
    problems += [f"missing required key '{key}'" for key in sorted(CATALOG_REQUIRED - set(entry))]
    if entry.get("$schema", "").rstrip("#") != CATALOG_SCHEMA_URL:
        problems.append(f"$schema must be {CATALOG_SCHEMA_URL}")
    if json_name != f"{project}.json":
        problems.append(f"the entry file is {json_name} but project() is {project}")
    if entry.get("category") != " ".join(cmake.get("EXTENSION_CATEGORY", [])):
        problems.append(f"category {entry.get('category')!r} differs from EXTENSION_CATEGORY {cmake.get('EXTENSION_CATEGORY')}")
    if "PyTorch" not in cmake.get("EXTENSION_DEPENDS", []):
        problems.append("EXTENSION_DEPENDS must list PyTorch")
    if "PyTorch" not in entry.get("build_dependencies", []):
        problems.append("build_dependencies must list PyTorch")
    if entry.get("tier") not in (1, 3, 5):
        problems.append("tier must be 1, 3 or 5")
    if entry.get("build_subdirectory") != "." or entry.get("scm_revision") != "main":
        problems.append("build_subdirectory must be '.' and scm_revision 'main'")
    homepage = " ".join(cmake.get("EXTENSION_HOMEPAGE", []))
    if str(entry.get("scm_url", "")).removesuffix(".git") != homepage:
        problems.append(f"scm_url {entry.get('scm_url')!r} is not the repository of EXTENSION_HOMEPAGE {homepage!r}")
    return problems


def test_extension_catalog_entry_matches_cmake():
    entry = json.loads(EXTENSION_JSON.read_text())  # invalid JSON fails here
    path = REPO / "CMakeLists.txt"
    project = cmake_calls(path, "project")[0][0]
    problems = catalog_entry_problems(entry, cmake_variables(path), project, EXTENSION_JSON.name)
    assert not problems, "\n".join(problems)


def test_catalog_check_reports_a_bad_entry():
    cmake = {"EXTENSION_CATEGORY": ["Artificial", "Intelligence"], "EXTENSION_DEPENDS": ["NA"],
             "EXTENSION_HOMEPAGE": ["https://github.com/a/b"]}
    bad = {"$schema": CATALOG_SCHEMA_URL, "category": "Segmentation", "scmurl": "x", "tier": 2}
    text = "\n".join(catalog_entry_problems(bad, cmake, "VFMVolumeLab", "Other.json"))
    assert "not one the ExtensionsIndex accepts" in "\n".join(
        catalog_entry_problems({**bad, "category": "Artificial Intelligence"}, cmake, "VFMVolumeLab", "Other.json"))
    for expected in ("unknown key 'scmurl'", "missing required key 'scm_url'", "Other.json", "category",
                     "EXTENSION_DEPENDS", "build_dependencies", "tier"):
        assert expected in text


def test_icon_and_screenshot_urls_point_at_files_in_this_repository():
    variables = cmake_variables(REPO / "CMakeLists.txt")
    homepage = variables["EXTENSION_HOMEPAGE"][0]
    raw_prefix = homepage.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/"
    urls = variables["EXTENSION_ICONURL"] + " ".join(variables["EXTENSION_SCREENSHOTURLS"]).split()
    assert len(urls) >= 2
    for url in urls:
        assert url.startswith(raw_prefix), f"{url} is not a raw URL of {homepage} on main"
        file = REPO / url[len(raw_prefix):]
        assert file.is_file(), f"{url}: {file.relative_to(REPO)} does not exist"
        assert file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_icons_are_128_pixel_pictures_not_flat_colour():
    from PIL import Image

    for path in (REPO / "Resources/Icons/VFMVolumeLab.png", REPO / "VFMVolumeLab/Resources/Icons/VFMVolumeLab.png",
                 REPO / "SegmentationTools/Resources/Icons/SegmentationTools.png"):
        image = Image.open(path).convert("RGBA")
        assert image.size == (128, 128), path
        colours = np.asarray(image)[..., :3][np.asarray(image)[..., 3] > 0]
        assert len(np.unique(colours, axis=0)) > 200, f"{path} looks like a flat colour"


# ---------------------------------------------------------------------------------------------
# Architecture: who may import what
# ---------------------------------------------------------------------------------------------


def imported_modules(tree: ast.AST) -> list[tuple[str, int]]:
    """Every absolute module name an import statement names, with ``from a import b`` giving ``a`` and ``a.b``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _is(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def slicer_import_problems(source: str, filename: str) -> list[str]:
    """Lines where a file outside vfmlab/mrml imports ``slicer``."""
    return [f"{filename}:{line}: imports {name}" for name, line in imported_modules(ast.parse(source))
            if _is(name, "slicer")]


GUI_MODULES = ("qt", "ctk", "slicer.util", "slicer.app")


def gui_use_problems(source: str, filename: str) -> list[str]:
    """Lines where vfmlab code imports Slicer's GUI layer or reaches ``slicer.util``/``slicer.app``."""
    tree = ast.parse(source)
    problems = [f"{filename}:{line}: imports {name}" for name, line in imported_modules(tree)
                if any(_is(name, gui) for gui in GUI_MODULES)]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in ("util", "app")
                and isinstance(node.value, ast.Name) and node.value.id == "slicer"):
            problems.append(f"{filename}:{node.lineno}: uses slicer.{node.attr}")
    return problems


def _vfmlab_sources():
    return sorted((REPO / "vfmlab").rglob("*.py"))


def test_only_vfmlab_mrml_imports_slicer():
    problems = []
    for path in _vfmlab_sources():
        relative = path.relative_to(REPO)
        if relative.parts[:2] == ("vfmlab", "mrml"):
            continue
        problems += slicer_import_problems(path.read_text(), str(relative))
    assert not problems, "only vfmlab/mrml may import slicer (keep vfmlab usable without Slicer):\n" + "\n".join(problems)


def test_vfmlab_never_uses_slicer_gui():
    problems = []
    for path in _vfmlab_sources():
        problems += gui_use_problems(path.read_text(), str(path.relative_to(REPO)))
    assert not problems, "vfmlab must run headless (CLI, jobs, tests): no qt/ctk/slicer.util/slicer.app:\n" + "\n".join(problems)


def test_import_checkers_catch_forbidden_imports():
    assert slicer_import_problems("import slicer\n", "a.py") == ["a.py:1: imports slicer"]
    assert slicer_import_problems("def f():\n    from slicer import vtkMRMLScene\n", "a.py")
    assert slicer_import_problems("import slicerio\nimport numpy\n", "a.py") == []
    for source in ("import qt", "import ctk", "from slicer.util import arrayFromVolume", "from slicer import util",
                   "from slicer import app", "import slicer.util as u", "import slicer\nx = slicer.util.getNode('a')",
                   "import slicer\nslicer.app.processEvents()"):
        assert gui_use_problems(source, "a.py"), source
    assert gui_use_problems("import slicer\nnode = slicer.vtkMRMLScalarVolumeNode()\n", "a.py") == []


# ---------------------------------------------------------------------------------------------
# Module files: thin, standard structure, nothing heavy at import time
# ---------------------------------------------------------------------------------------------

LOCAL_PACKAGES = {
    "vfmlab": REPO / "vfmlab",
    "VFMVolumeLabLib": REPO / "VFMVolumeLab" / "VFMVolumeLabLib",
    "SegmentationToolsLib": REPO / "SegmentationTools" / "SegmentationToolsLib",
}


def _module_file(name: str, packages: dict[str, Path]) -> Path | None:
    root, *rest = name.split(".")
    if root not in packages:
        return None
    base = packages[root].joinpath(*rest)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path, packages: dict[str, Path]) -> str | None:
    for root, folder in packages.items():
        try:
            relative = path.relative_to(folder)
        except ValueError:
            continue
        parts = [root, *relative.with_suffix("").parts]
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return None


def import_time_imports(tree: ast.Module, module_name: str | None, is_package: bool) -> list[str]:
    """Absolute names imported while the module executes: not inside functions or ``if TYPE_CHECKING``."""
    names: list[str] = []

    def visit(statements):
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    names.extend(".".join(parts[: i + 1]) for i in range(len(parts)))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    package = (module_name or "").split(".")
                    if not is_package:
                        package = package[:-1]
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join(package + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                parts = base.split(".")
                names.extend(".".join(parts[: i + 1]) for i in range(len(parts)))
                names.extend(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, (ast.With, ast.For, ast.While, ast.ClassDef)):
                visit(node.body)
                if hasattr(node, "orelse"):
                    visit(node.orelse)

    visit(tree.body)
    return names


def packages_loaded_at_import(path: Path, packages: dict[str, Path] = LOCAL_PACKAGES) -> dict[str, str]:
    """Third-party top-level packages that importing ``path`` loads, following local modules;
    maps each to the chain of local modules that leads to it."""
    external: dict[str, str] = {}
    seen: set[Path] = set()
    queue = [(path, path.name)]
    while queue:
        current, chain = queue.pop()
        if current in seen:
            continue
        seen.add(current)
        tree = ast.parse(current.read_text())
        name = _module_name(current, packages)
        for imported in import_time_imports(tree, name, current.name == "__init__.py"):
            local = _module_file(imported, packages)
            if local is not None:
                queue.append((local, f"{chain} -> {imported}"))
            elif imported.split(".")[0] not in packages:
                external.setdefault(imported.split(".")[0], f"{chain} -> {imported}")
    return external


def _not_in_slicer() -> set[str]:
    """Import names that a fresh Slicer lacks until the user clicks "Install dependencies"."""
    from VFMVolumeLabLib import dependencies

    return {"torch", "torchvision"} | {package.import_name for package in dependencies.PACKAGES}


@pytest.mark.parametrize("module", MODULES)
def test_module_file_loads_nothing_heavy_while_slicer_discovers_modules(module):
    loaded = packages_loaded_at_import(REPO / module / f"{module}.py")
    heavy = {name: chain for name, chain in loaded.items() if name in _not_in_slicer()}
    assert not heavy, f"{module}.py imports at load time (move these imports into functions): {heavy}"
    # Anything else must be in Python's standard library or ship with Slicer itself.
    in_slicer = set(sys.stdlib_module_names) | {"slicer", "qt", "ctk", "vtk", "numpy", "SimpleITK", "packaging"}
    unknown = {name: chain for name, chain in loaded.items() if name not in in_slicer}
    assert not unknown, f"{module}.py imports at load time packages a fresh Slicer may lack: {unknown}"


def test_import_time_checker_follows_local_modules(tmp_path):
    package = tmp_path / "heavylib"
    package.mkdir()
    (package / "__init__.py").write_text("from .inner import model\n")
    (package / "inner.py").write_text("import os\nif True:\n    import torch\nmodel = None\n")
    (package / "lazy.py").write_text("def f():\n    import torch\nfrom typing import TYPE_CHECKING\n"
                                     "if TYPE_CHECKING:\n    import monai\n")
    module = tmp_path / "Mod.py"
    module.write_text("import slicer\nfrom heavylib import lazy\n")
    loaded = packages_loaded_at_import(module, {"heavylib": package})
    assert "torch" in loaded and "heavylib.inner" in loaded["torch"]
    assert "monai" not in loaded
    module.write_text("import slicer\ndef f():\n    import heavylib\n")
    assert packages_loaded_at_import(module, {"heavylib": package}) == {"slicer": "Mod.py -> slicer"}


def _classes(path: Path) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in ast.parse(path.read_text()).body if isinstance(node, ast.ClassDef)}


def module_structure_problems(source: str, module: str) -> list[str]:
    tree = ast.parse(source)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    expected = {
        module: {"ScriptedLoadableModule"},
        f"{module}Widget": {"ScriptedLoadableModuleWidget", "VTKObservationMixin"},
        f"{module}Logic": {"ScriptedLoadableModuleLogic"},
        f"{module}Test": {"ScriptedLoadableModuleTest"},
    }
    problems = []
    for name, bases in expected.items():
        if name not in classes:
            problems.append(f"class {name} is missing")
            continue
        have = {ast.unparse(base).split(".")[-1] for base in classes[name].bases}
        problems += [f"class {name} must derive from {base}" for base in sorted(bases - have)]
    lines = source.count("\n") + 1
    if lines >= 400:
        problems.append(f"{lines} lines: keep the module file thin (< 400 lines), move logic into {module}Lib")
    logic = classes.get(f"{module}Logic")
    if logic is not None:
        for node in ast.walk(logic):
            if isinstance(node, ast.Name) and node.id in ("qt", "ctk"):
                problems.append(f"{module}Logic uses {node.id} (line {node.lineno}): Logic classes contain no Qt")
    return problems


@pytest.mark.parametrize("module", MODULES)
def test_module_file_is_thin_and_has_the_four_standard_classes(module):
    source = (REPO / module / f"{module}.py").read_text()
    problems = module_structure_problems(source, module)
    assert not problems, "\n".join(problems)
    assert 'self.parent.categories = ["VFM Volume Lab"]' in source
    # Slicer's default link leads to its manual's page for built-in modules, which extension modules lack
    assert "getDefaultModuleDocumentationLink" not in source and "documentation_link()" in source


def test_help_links_to_the_extension_homepage():
    import VFMVolumeLabLib

    homepage = cmake_variables(REPO / "CMakeLists.txt")["EXTENSION_HOMEPAGE"][0]
    assert VFMVolumeLabLib.DOCUMENTATION_URL.startswith(homepage + "#")
    assert f'href="{VFMVolumeLabLib.DOCUMENTATION_URL}"' in VFMVolumeLabLib.documentation_link()


def test_structure_checker_reports_missing_classes_and_qt_in_logic():
    source = ("import qt\nclass Mod(ScriptedLoadableModule): pass\n"
              "class ModWidget(ScriptedLoadableModuleWidget): pass\n"
              "class ModLogic(ScriptedLoadableModuleLogic):\n    def f(self):\n        return qt.QTimer()\n")
    text = "\n".join(module_structure_problems(source, "Mod"))
    assert "ModWidget must derive from VTKObservationMixin" in text
    assert "class ModTest is missing" in text
    assert "ModLogic uses qt" in text
    assert "keep the module file thin" in "\n".join(module_structure_problems("\n" * 450, "Mod"))


@pytest.mark.parametrize("module", MODULES)
def test_lib_packages_import_without_qt(module):
    problems = []
    for path in sorted((REPO / module / f"{module}Lib").glob("*.py")):
        if path.stem.endswith("_widget"):  # a panel section's Qt glue: the one place Qt belongs
            continue
        tree = ast.parse(path.read_text())
        names = import_time_imports(tree, None, path.name == "__init__.py")
        problems += [f"{path.relative_to(REPO)} imports {name} at load time" for name in names
                     if name.split(".")[0] in ("qt", "ctk")]
    assert not problems, "Lib helpers must import in plain Python (tests, background jobs):\n" + "\n".join(problems)


def test_dependency_installation_lives_only_in_the_shared_helper():
    helper = REPO / "VFMVolumeLab" / "VFMVolumeLabLib" / "dependencies.py"
    offenders = []
    for module in MODULES:
        for path in (REPO / module).rglob("*.py"):
            if path == helper or "Testing" in path.relative_to(REPO / module).parts:
                continue
            text = path.read_text()
            offenders += [f"{path.relative_to(REPO)}: {word}" for word in ("installTorch", "pip_install", "pip_ensure")
                          if word in text]
    assert not offenders, "use VFMVolumeLabLib.dependencies instead of a copy:\n" + "\n".join(offenders)


def _ui_widget_names(path: Path) -> tuple[set[str], dict[str, str]]:
    """Widget object names in a .ui file, and widget name -> SlicerParameterName."""
    classes, parameters, _ = _ui_widgets(path)
    return set(classes), parameters


def _ui_widgets(path: Path) -> tuple[dict[str, str], dict[str, str], dict[str, list[str]]]:
    """Widget name -> class, widget name -> SlicerParameterName, and a node selector's name -> nodeTypes."""
    root = ElementTree.parse(path).getroot()
    classes, parameters, node_types = {}, {}, {}
    for widget in root.iter("widget"):
        classes[widget.get("name")] = widget.get("class")
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                parameters[widget.get("name")] = prop.findtext("string")
            if prop.get("name") == "nodeTypes":
                node_types[widget.get("name")] = [item.text for item in prop.iter("string")]
    return classes, parameters, node_types


# What Slicer's parameterNodeWrapper/guiConnectors.py connects: widget class -> field type it represents.
CONNECTABLE = {"QSpinBox": "int", "QDoubleSpinBox": "float", "ctkSliderWidget": "float", "QCheckBox": "bool",
               "QLineEdit": "str", "QComboBox": "str", "ctkPathLineEdit": "Path", "ctkDirectoryButton": "Path"}


def _parameter_fields(source: str) -> dict[str, str]:
    """Field name -> annotation source of every ``@parameterNodeWrapper`` class in ``source``."""
    fields = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and any(ast.unparse(d).endswith("parameterNodeWrapper") for d in node.decorator_list):
            fields |= {item.target.id: ast.unparse(item.annotation) for item in node.body if isinstance(item, ast.AnnAssign)}
    return fields


def binding_problems(source: str, classes: dict[str, str], parameters: dict[str, str],
                     node_types: dict[str, list[str]]) -> list[str]:
    """Each field bound to exactly one widget that Slicer can connect to the field's type."""
    fields = _parameter_fields(source)
    problems = [f"field {name} is bound to no widget (SlicerParameterName)" for name in sorted(fields)
                if name not in parameters.values()]
    for widget, name in sorted(parameters.items()):
        annotation = fields.get(name, "")
        base = re.sub(r"^Optional\[(.*)\]$", r"\1", re.sub(r"^Annotated\[([^,\]]+).*$", r"\1", annotation))
        widget_class = classes[widget]
        if widget_class == "qMRMLNodeComboBox":
            ok = base in node_types.get(widget, [])
        else:
            ok = CONNECTABLE.get(widget_class) == base and (widget_class != "QComboBox" or "Choice(" in annotation)
        if name in fields and not ok:
            problems.append(f"widget {widget} ({widget_class}) cannot show field {name}: {annotation}")
    return problems


def ui_consistency_problems(module_source: str, ui_names: set[str], ui_parameters: dict[str, str]) -> list[str]:
    tree = ast.parse(module_source)
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}
    problems = [f"self.ui.{name} is not a widget of the .ui file" for name in sorted(used - ui_names)]
    fields = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(ast.unparse(d).endswith("parameterNodeWrapper") for d in node.decorator_list):
            fields |= {item.target.id for item in node.body if isinstance(item, ast.AnnAssign)}
    problems += [f"widget {widget} is bound to '{name}', which the parameter node class lacks"
                 for widget, name in sorted(ui_parameters.items()) if name not in fields]
    return problems


@pytest.mark.parametrize("module", MODULES)
def test_ui_file_and_module_code_agree(module):
    ui_names, ui_parameters = _ui_widget_names(REPO / module / "Resources" / "UI" / f"{module}.ui")
    assert ui_parameters, "connect the selectors to the parameter node with SlicerParameterName"
    problems = ui_consistency_problems((REPO / module / f"{module}.py").read_text(), ui_names, ui_parameters)
    assert not problems, "\n".join(problems)


SECTIONS = (  # the section's .ui file, and the files whose self.ui uses it (the first holds the parameters)
    ("VFMVolumeLab/Resources/UI/DeepDVR.ui", ("VFMVolumeLab/VFMVolumeLabLib/dvr_widget.py",)),
    ("VFMVolumeLab/Resources/UI/Probe.ui", ("VFMVolumeLab/VFMVolumeLabLib/probe_widget.py",)),
    ("VFMVolumeLab/Resources/UI/KeySlices.ui", ("VFMVolumeLab/VFMVolumeLabLib/keyslices_widget.py",)),
    ("SegmentationTools/Resources/UI/BTVAE.ui", ("SegmentationTools/SegmentationToolsLib/btvae_widget.py",)),
    ("SegmentationTools/Resources/UI/PromptSegment.ui", ("SegmentationTools/SegmentationToolsLib/segment_widget.py",
                                                         "SegmentationTools/SegmentationToolsLib/finetune_widget.py")),
)


@pytest.mark.parametrize("ui_file, sources", SECTIONS, ids=[Path(ui).stem for ui, _ in SECTIONS])
def test_each_section_binds_its_settings_to_the_parameter_node(ui_file, sources):
    classes, parameters, node_types = _ui_widgets(REPO / ui_file)
    assert parameters, "bind the section's settings with SlicerParameterName"
    texts = [(REPO / source).read_text() for source in sources]
    problems = [problem for text in texts for problem in ui_consistency_problems(text, set(classes), {})]
    problems += ui_consistency_problems(texts[0], set(classes), parameters)
    problems += binding_problems(texts[0], classes, parameters, node_types)
    assert not problems, "\n".join(problems)


def test_binding_checker_reports_unbound_fields_and_widgets_that_cannot_show_a_type():
    source = ("@parameterNodeWrapper\nclass P:\n    epochs: Annotated[int, Default(3)]\n"
              "    model: Annotated[str, Default('a')]\n    volume: Optional[vtkMRMLScalarVolumeNode]\n"
              "    unbound: bool\n")
    classes = {"epochsBox": "QDoubleSpinBox", "modelCombo": "QComboBox", "volumeSelector": "qMRMLNodeComboBox"}
    parameters = {"epochsBox": "epochs", "modelCombo": "model", "volumeSelector": "volume"}
    assert binding_problems(source, classes, parameters, {"volumeSelector": ["vtkMRMLScalarVolumeNode"]}) == [
        "field unbound is bound to no widget (SlicerParameterName)",
        "widget epochsBox (QDoubleSpinBox) cannot show field epochs: Annotated[int, Default(3)]",
        "widget modelCombo (QComboBox) cannot show field model: Annotated[str, Default('a')]"]


def test_ui_checker_reports_unknown_widgets_and_parameters():
    source = ("@parameterNodeWrapper\nclass P:\n    inputVolume: int\n"
              "class W:\n    def f(self):\n        self.ui.applyButton.enabled = True\n")
    problems = ui_consistency_problems(source, {"inputSelector"}, {"inputSelector": "inputVolme"})
    assert problems == ["self.ui.applyButton is not a widget of the .ui file",
                        "widget inputSelector is bound to 'inputVolme', which the parameter node class lacks"]


# ---------------------------------------------------------------------------------------------
# Slicer-side helpers, in plain Python against real MRML (slicer-core wheel)
# ---------------------------------------------------------------------------------------------


def test_dependency_list_covers_the_packages_vfmlab_declares():
    import tomllib

    from VFMVolumeLabLib import dependencies

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    provided_by_slicer = {"numpy", "simpleitk", "slicer-core", "torch", "torchvision"}
    ours = {package.name.lower() for package in dependencies.PACKAGES}
    for requirement in declared:
        name = dependencies.Package(requirement, "").name.lower()
        if name in provided_by_slicer:
            continue
        assert name in ours, f"{requirement} (pyproject.toml) is not installed by VFMVolumeLabLib.dependencies"
    # One set of bounds: what Slicer's installer asks for is what pyproject.toml declares, torch included.
    declared_by_name = {dependencies.Package(r, "").name.lower(): r for r in declared}
    for package in (dependencies.TORCH, *dependencies.PACKAGES):
        assert package.requirement == declared_by_name[package.name.lower()], package.requirement


def test_declared_bounds_agree_with_each_other():
    """The lowest torch the installer accepts is one the installed monai accepts."""
    import importlib.metadata

    from packaging.requirements import Requirement

    from VFMVolumeLabLib import dependencies

    torch_floor = Requirement(dependencies.TORCH.requirement).specifier
    floor_version = next(spec.version for spec in torch_floor if spec.operator == ">=")
    monai_needs = next(Requirement(r) for r in importlib.metadata.requires("monai") if r.startswith("torch"))
    assert monai_needs.specifier.contains(floor_version), (monai_needs, floor_version)


def test_missing_packages_compares_installed_versions():
    from VFMVolumeLabLib.dependencies import TORCH, Package, missing_packages, status_text

    installed = {"torch": "2.9.1+cu121", "timm": "0.9.2", "monai": "1.5.0"}
    packages = [TORCH, Package("timm>=1.0", "timm"), Package("segment-anything>=1.0", "segment_anything"),
                Package("monai>=1.5", "monai")]
    missing = missing_packages(packages, version_of=installed.get)
    assert [p.requirement for p in missing] == ["timm>=1.0", "segment-anything>=1.0"]  # too old, absent
    assert missing_packages([Package("torch>=2.4", "torch")], {"torch": "2.6.0.dev20241101"}.get) == []
    assert "Missing: timm>=1.0" in status_text(missing)
    assert status_text([]) == "All Python dependencies are installed."


def test_sample_data_sources_point_at_the_bundled_files_with_right_checksums():
    from VFMVolumeLabLib import sample_data_source as source

    def loader(s=None):
        return None

    entries = source.sample_data_sources(organs_loader=loader)
    assert [e["sampleName"] for e in entries] == ["VFMSampleCT", "VFMSampleCTOrgans"]
    for entry in entries:
        uri = urlparse(entry["uris"])
        assert uri.scheme == "file", "Sample Data reads URIs with urllib: a bare path is not accepted"
        file = Path(url2pathname(uri.path))
        assert file.is_file() and file.name == entry["fileNames"]
        algorithm, digest = entry["checksums"].split(":")
        assert algorithm == "SHA256" and hashlib.sha256(file.read_bytes()).hexdigest() == digest
        assert Path(entry["thumbnailFileName"]).is_file()
        assert entry["category"] == "VFM Volume Lab"
    assert entries[0]["loadFileType"] == "VolumeFile" and "customDownloader" not in entries[0]
    assert entries[1]["customDownloader"] is loader
    assert source.sample_data_sources() == entries[:1]


def test_sample_data_registration_adds_each_entry_once():
    from VFMVolumeLabLib.sample_data_source import register_sample_data

    class FakeSource:
        def __init__(self, sampleName):
            self.sampleName = sampleName

    class FakeSampleDataLogic:
        sources: dict[str, list] = {}

        @staticmethod
        def sampleDataSourcesByCategory(category=None):
            return FakeSampleDataLogic.sources.get(category, [])

        @staticmethod
        def registerCustomSampleDataSource(category="Custom", sampleName=None, **kwargs):
            FakeSampleDataLogic.sources.setdefault(category, []).append(FakeSource(sampleName))

    assert register_sample_data(FakeSampleDataLogic, organs_loader=lambda s=None: None) == ["VFMSampleCT", "VFMSampleCTOrgans"]
    assert register_sample_data(FakeSampleDataLogic, organs_loader=lambda s=None: None) == []
    assert len(FakeSampleDataLogic.sources["VFM Volume Lab"]) == 2


def test_volume_geometry_text_of_a_node(scene):
    from VFMVolumeLabLib.geometry import NO_VOLUME_TEXT, format_volume_info, volume_geometry_text
    from vfmlab.mrml import add_volume_node
    from vfmlab.volume import Volume

    direction = np.diag([-1.0, 1.0, 1.0])
    volume = Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4) - 5, (0.5, 0.75, 2.0), (10, -20, 30), direction, "probe")
    text = volume_geometry_text(add_volume_node(scene, volume, name="probe"))
    assert text == format_volume_info(volume.info())
    for expected in ("Name:        probe", "Size (IJK):  4 x 3 x 2 voxels", "Spacing:     0.5 x 0.75 x 2 mm",
                     "Origin:      (10.000, -20.000, 30.000) mm (RAS)", "Scalar type: int16", "Value range: [-5, 18]",
                     "  [  -0.5000     0.0000     0.0000    10.0000 ]"):
        assert expected in text, expected
    assert volume_geometry_text(None) == NO_VOLUME_TEXT
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    assert "has no image data" in volume_geometry_text(empty)


def test_load_sample_with_segmentation_names_every_organ(scene):
    from VFMVolumeLabLib.sample_data_source import SEGMENTATION_NODE_NAME, load_sample_with_segmentation
    from vfmlab.mrml import segment_names
    from vfmlab.sample_data import sample_label_names

    volume_node, segmentation_node = load_sample_with_segmentation(scene)
    assert volume_node.GetName() == "VFMSampleCT"
    assert volume_node.GetImageData().GetDimensions() == (122, 101, 112)
    assert volume_node.GetStorageNode() is None, "saving the scene must not overwrite the bundled file"
    display = volume_node.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel(), display.GetAutoWindowLevel()) == (400.0, 40.0, 0)
    assert segmentation_node.GetName() == SEGMENTATION_NODE_NAME
    assert sorted(segment_names(segmentation_node).values()) == sorted(sample_label_names().values())


def test_load_sample_failure_leaves_the_scene_as_it_was(scene, monkeypatch):
    import vfmlab.mrml
    from VFMVolumeLabLib.sample_data_source import load_sample_with_segmentation
    from vfmlab.errors import InputError

    def fail(*args, **kwargs):
        raise InputError("simulated failure")

    monkeypatch.setattr(vfmlab.mrml, "add_segmentation_from_labels", fail)
    before = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="simulated"):
        load_sample_with_segmentation(scene)
    assert scene.GetNumberOfNodes() == before


def test_label_names_are_found_beside_the_label_map(tmp_path):
    from SegmentationToolsLib.label_import import find_label_names_file, read_label_names
    from vfmlab.errors import InputError
    from vfmlab.sample_data import sample_label_names, sample_labels_path

    names_file = find_label_names_file(sample_labels_path())
    assert names_file is not None and names_file.name == "VFMSampleCT_label_names.json"
    assert read_label_names(names_file) == sample_label_names()
    (tmp_path / "seg.nii.gz").write_bytes(b"")
    assert find_label_names_file(tmp_path / "seg.nii.gz") is None
    (tmp_path / "seg.json").write_text('{"1": "liver", "2": 7, "x": "bad", "3": "kidney"}')
    assert find_label_names_file(tmp_path / "seg.nii.gz") == tmp_path / "seg.json"
    assert read_label_names(tmp_path / "seg.json") == {1: "liver", 3: "kidney"}
    (tmp_path / "list.json").write_text('["liver"]')
    assert read_label_names(tmp_path / "list.json") == {}
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match="broken.json"):
        read_label_names(tmp_path / "broken.json")


def test_import_label_map_makes_a_new_named_segmentation(scene):
    from SegmentationToolsLib.label_import import import_label_map
    from vfmlab.volume_io import read_volume
    from vfmlab.mrml import add_volume_node, segment_names
    from vfmlab.sample_data import sample_ct_path, sample_labels_path

    volume_node = add_volume_node(scene, read_volume(sample_ct_path()), name="VFMSampleCT")
    first = import_label_map(scene, sample_labels_path(), volume_node)
    second = import_label_map(scene, sample_labels_path(), volume_node)
    assert first.GetID() != second.GetID(), "every import creates a new segmentation node"
    assert first.GetName() == "VFMSampleCT_labels"
    names = segment_names(first).values()
    assert len(names) == 61 and "liver" in names and "aorta" in names


def test_import_label_map_refuses_bad_files_and_leaves_the_scene_untouched(scene, tmp_path):
    from SegmentationToolsLib.label_import import import_label_map
    from vfmlab.errors import InputError
    from vfmlab.volume_io import write_volume
    from vfmlab.mrml import add_volume_node
    from vfmlab.volume import Volume

    volume = Volume(np.zeros((4, 5, 6), dtype=np.int16), (1.0, 1.0, 2.0))
    volume_node = add_volume_node(scene, volume, name="grid")
    cases = {
        "other_grid.nrrd": Volume(np.ones((4, 5, 7), dtype=np.uint8)),
        "shifted.nrrd": Volume(np.ones((4, 5, 6), dtype=np.uint8), (1.0, 1.0, 2.0), (5.0, 0.0, 0.0)),
        "empty.nrrd": Volume(np.zeros((4, 5, 6), dtype=np.uint8), (1.0, 1.0, 2.0)),
        "fractional.nrrd": Volume(np.full((4, 5, 6), 0.5, dtype=np.float32), (1.0, 1.0, 2.0)),
    }
    before = scene.GetNumberOfNodes()
    for name, labels in cases.items():
        path = write_volume(labels, tmp_path / name)
        with pytest.raises(InputError):
            import_label_map(scene, path, volume_node)
        assert scene.GetNumberOfNodes() == before, name
    (tmp_path / "not_an_image.nrrd").write_text("hello")
    with pytest.raises(InputError, match="not_an_image.nrrd"):
        import_label_map(scene, tmp_path / "not_an_image.nrrd", volume_node)
    with pytest.raises(InputError, match="select the volume"):
        import_label_map(scene, tmp_path / "empty.nrrd", None)
    assert scene.GetNumberOfNodes() == before


def test_vfmlab_is_importable_for_the_modules():
    import VFMVolumeLabLib

    path_before = list(sys.path)
    VFMVolumeLabLib.ensure_vfmlab_importable()  # already importable here: nothing to do
    assert sys.path == path_before


# ---------------------------------------------------------------------------------------------
# The module files' Logic classes, imported with stand-ins for the parts only the Slicer app has
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def module_logic(monkeypatch):
    """``load(module)`` imports ``<module>.py`` with stand-ins for ``qt`` and Slicer's scripted-module
    base classes (the slicer-core wheel has MRML but no application); returns the module object."""
    import importlib.util
    import types

    base = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            pass

    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleTest"):
        setattr(base, name, type(name, (), {}))
    base.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    monkeypatch.setitem(sys.modules, "qt", types.ModuleType("qt"))
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", base)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)

    def load(module: str):
        spec = importlib.util.spec_from_file_location(f"_layout_test_{module}", REPO / module / f"{module}.py")
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
        return loaded

    return load


def test_vfmvolumelab_logic_works_on_a_given_scene(module_logic, scene):
    module = module_logic("VFMVolumeLab")
    logic = module.VFMVolumeLabLogic(scene)
    assert logic.scene is scene
    volume_node, segmentation_node = logic.loadSampleWithSegmentation()
    assert segmentation_node.GetSegmentation().GetNumberOfSegments() == 61
    assert "122 x 101 x 112" in logic.volumeGeometryText(volume_node)
    missing = logic.missingDependencies()
    assert isinstance(missing, list) and logic.dependencyStatusText(missing)


def test_segmentationtools_logic_imports_label_maps_into_a_given_scene(module_logic, scene, tmp_path):
    from vfmlab.errors import InputError
    from vfmlab.volume_io import read_volume, write_volume
    from vfmlab.mrml import add_volume_node
    from vfmlab.sample_data import sample_ct_path, sample_labels_path
    from vfmlab.volume import Volume

    module = module_logic("SegmentationTools")
    logic = module.SegmentationToolsLogic(scene)
    volume_node = add_volume_node(scene, read_volume(sample_ct_path()), name="VFMSampleCT")
    segmentation_node = logic.importLabelMapFile(sample_labels_path(), volume_node)
    assert segmentation_node.GetScene() is scene
    assert "Label maps (" in logic.labelMapFileFilter()
    small = write_volume(Volume(np.ones((4, 5, 6), dtype=np.uint8)), tmp_path / "small.nrrd")
    before = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="small.nrrd"):
        logic.importLabelMapFile(small, volume_node)
    assert scene.GetNumberOfNodes() == before
