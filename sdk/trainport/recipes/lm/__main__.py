"""`python -m trainport.recipes.lm`: what the platform runs for `recipe: lm`."""

import sys
import warnings

# The CPU wheels of torch work without NumPy and warn about it on import; the recipe never needs it.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

from trainport.recipes.lm.train import main  # noqa: E402 - after the filter above

if __name__ == "__main__":
    sys.exit(main())
