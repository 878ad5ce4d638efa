"""`python -m health_beam --source URL [...]`: run the check as a Beam pipeline."""

from health_beam.pipeline import main

if __name__ == "__main__":
    main()
