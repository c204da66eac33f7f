"""docstream: read documents far longer than a model's window, then summarize them and answer questions.

    import docstream
    doc = docstream.open("book.txt")
    doc.read(progress=True)
    answer = doc.ask("What color was the car?")
    print(answer.answer, answer.citations[0].quote)

Nothing here imports torch until a model is needed.
"""
from .errors import DocstreamError

__version__ = "0.1.0"
__all__ = ["DocstreamError", "Document", "open", "get_engine", "__version__"]


def __getattr__(name: str):
    if name in ("open", "Document", "get_engine", "ReadResult"):
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
