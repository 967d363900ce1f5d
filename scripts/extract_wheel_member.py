"""Copy one member out of the single wheel (a zip file) in a folder: used to obtain the default corpus."""
import shutil
import sys
import zipfile
from pathlib import Path


def main(wheel_dir: str, member: str, out: str) -> int:
    wheels = sorted(Path(wheel_dir).glob("*.whl"))
    if not wheels:
        print(f"error: no wheel in {wheel_dir}", file=sys.stderr)
        return 1
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    with zipfile.ZipFile(wheels[-1]) as wheel, wheel.open(member) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    tmp.replace(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
