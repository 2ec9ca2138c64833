"""How diagnostics are printed: one format for the driver, the sweep command and every cluster job."""
import logging


def configure_logging() -> None:
    """``logging`` lines on stderr, INFO and above, as ``HH:MM:SS logger: message`` (no-op once configured)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
