"""Print the settings as a Markdown table (pasted into docs/operator-guide.md)."""

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from backend.platform.settings import Settings

print("| setting | environment variable | default | what it does |")
print("|---|---|---|---|")
for f in dataclasses.fields(Settings):
    default = "<project>/.data" if f.name == "data_dir" else f.default
    print(f"| `{f.name}` | `STCLOUD_{f.name.upper()}` | `{default}` | {f.metadata['help']} |")
