"""Guard: no real cloud endpoint, account id or credential is ever committed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS account id in an ARN": re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(?!000000000000)\d{12}:"),
    "Azure subscription path": re.compile(
        r"/subscriptions/(?!00000000-0000-0000-0000-00000000000\d)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-"
        r"[0-9a-f]{4}-[0-9a-f]{12}"),
    # Account- or workspace-specific service hosts (schema/documentation hosts are fine).
    "real cloud endpoint": re.compile(
        r"https://(?!(?:example|mock|fake)[.-])[a-z0-9-]+\.(?:[a-z0-9-]+\.)*(?:[a-z]{2}-[a-z]+-\d\.amazonaws\.com|blob\.core\.windows\.net|"
        r"vault\.azure\.net|api\.azureml\.ms)", re.I),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
}
_SELF = Path(__file__).relative_to(ROOT).as_posix()


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, text=True,
                         capture_output=True, check=True)
    return [ROOT / p for p in out.stdout.splitlines() if p and p != _SELF and (ROOT / p).is_file()]


def test_no_credentials_account_ids_or_real_endpoints_in_the_repo():
    hits = []
    for path in tracked_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for what, pattern in PATTERNS.items():
            for match in pattern.finditer(text):
                hits.append(f"{path.relative_to(ROOT)}: {what}: {match.group(0)[:60]}")
    assert hits == []


def test_guard_patterns_catch_what_they_claim():
    assert PATTERNS["AWS access key id"].search("key = AKIAABCDEFGHIJKLMNOP")
    assert PATTERNS["AWS account id in an ARN"].search("arn:aws:iam::123456789012:role/x")
    assert not PATTERNS["AWS account id in an ARN"].search("arn:aws:iam::000000000000:role/x")
    assert PATTERNS["real cloud endpoint"].search("https://runtime.sagemaker.eu-west-1.amazonaws.com/")
    assert not PATTERNS["real cloud endpoint"].search("https://mock-kv.vault.azure.net/")
