"""docstream: read documents far longer than a model's window, then summarize them and answer questions.

    import docstream
    doc = docstream.open("book.txt")
    doc.read(progress=True)
    answer = doc.ask("What color was the car?")
    print(answer.answer, answer.citations[0].quote)

    # many documents, the same questions, one JSON line each (resumable)
    for r in docstream.batch(["a.txt", "b.txt"], questions=["Who is the narrator?"], jsonl="out.jsonl"):
        print(r.document, r.status, r.answers[0].answer if r.ok else r.error)

Nothing here imports torch until a model is needed (these imports take ~40 ms).
"""
from .api import Document, ReadResult, get_engine, open  # noqa: A004 - docstream.open mirrors builtins.open
from .ask.answer import Answer, Citation
from .errors import DocstreamError
from .jobs.batch import Result, batch

__version__ = "0.1.0"
__all__ = ["Answer", "Citation", "DocstreamError", "Document", "ReadResult", "Result", "__version__", "batch",
           "get_engine", "open"]
