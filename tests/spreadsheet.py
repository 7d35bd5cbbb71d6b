"""A real spreadsheet engine for the tests: LibreOffice Calc, headless, recalculating every formula on load."""
from __future__ import annotations

import subprocess
from pathlib import Path

from cli_checks import installed_tool

# A LibreOffice profile that recalculates OOXML and ODF files on load (Tools > Options > Calc > Formula >
# "Recalculation on File Load": Always); the default keeps the values a file stores.
_PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="ODFRecalcMode" oor:op="fuse"><value>0</value></prop></item>
</oor:items>
"""


def soffice() -> str:
    """The LibreOffice binary, or skip (fail under CI, which installs it)."""
    return installed_tool(("soffice", "libreoffice"), "LibreOffice (soffice)", "libreoffice-calc-nogui")


def recalculate(paths, outdir: Path, profile: Path) -> list:
    """Open each workbook in LibreOffice, recalculate every formula, save it as XLSX under `outdir`."""
    user = profile / "user"
    user.mkdir(parents=True, exist_ok=True)
    (user / "registrymodifications.xcu").write_text(_PROFILE)
    outdir.mkdir(parents=True, exist_ok=True)
    subprocess.run([soffice(), f"-env:UserInstallation={profile.resolve().as_uri()}", "--headless", "--norestore",
                    "--convert-to", "xlsx", "--outdir", str(outdir)] + [str(p) for p in paths],
                   check=True, capture_output=True, timeout=600)
    out = [outdir / Path(p).name for p in paths]
    for p in out:
        assert p.exists(), f"LibreOffice wrote no {p}"
    return out
