"""
All-or-nothing output folders: an exporter writes into a temporary sibling of its target
(`staging_folder`) and swaps it in only when complete (`move_into_place`), so a failed run
leaves no partial folder and an earlier complete one intact; `check_replaceable` refuses,
before any work, a target that holds files the exporter does not own.
"""
import os
import shutil
import tempfile

__all__ = ["check_replaceable", "staging_folder", "move_into_place"]


def check_replaceable(path, allowed, flag):
    """
    Fail (before any inference) when `path` exists and is not a folder an export could have
    written: replacing it would delete files the export does not own (e.g. checkpoints).
    `allowed`: the name endings (str or tuple) an export writes; `flag`: the option that
    named `path`, for the message.
    """
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path):
        raise SystemExit(f"{flag} {path} exists and is not a folder")
    foreign = sorted(
        name for name in os.listdir(path)
        if not (os.path.isfile(os.path.join(path, name)) and name.endswith(allowed))
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (f", ... ({len(foreign) - 5} more)" if len(foreign) > 5 else "")
        raise SystemExit(
            f"{flag} {path} exists and holds what an export does not write ({shown}); the export "
            "replaces its target folder, so pick a new folder or remove this one"
        )


def staging_folder(path):
    """A new empty temporary sibling of `path` (same file system, so the final move is a rename)."""
    # imported here: the utils stay free of wss_d2.data (which owns the marker) at import time
    from ..data.datasets.pseudo_labels import PARTIAL_EXPORT_MARKER

    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    # registration refuses a folder with the marker in its name (one left by a killed export)
    return tempfile.mkdtemp(prefix=f".{os.path.basename(path)}{PARTIAL_EXPORT_MARKER}", dir=parent)


def move_into_place(staged, path):
    """Replace `path` by the complete folder `staged`; an earlier `path` is deleted only afterwards."""
    previous = None
    if os.path.lexists(path):
        previous = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.previous-", dir=os.path.dirname(path))
        os.rmdir(previous)
        os.rename(path, previous)
    try:
        os.rename(staged, path)
    except OSError:
        if previous is not None:
            os.rename(previous, path)  # put the earlier export back
        raise
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
