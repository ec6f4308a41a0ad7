"""The book layer: building the Jupyter Book (``build``), the chapter template (``chapter``),
words and labels (``labels``), tables (``tables``; ``reference``: the paper's numbers and the CSV files they are read from),
figures (``plots``), live controls (``widgets``) and the analyses chapters draw
(``attention``, ``diagnostics``, ``failures``, ``examples``).

The top layer beside the CLI: it imports the engine, the methods, the model and the data;
nothing imports it. ``python -m anomclip.book`` executes and renders the book.
"""
