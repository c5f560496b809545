"""Explorer tabs: each module has TITLE and `render(root: Path)`; they only read run folders."""
