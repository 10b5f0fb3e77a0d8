"""``python -m daskgif`` is ``daskgif``."""

from daskgif.cli import main

if __name__ == "__main__":
    main()
