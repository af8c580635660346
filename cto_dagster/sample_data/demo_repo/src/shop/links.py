"""Links between the shop's pages."""


def label(path: str) -> str:
    """A page's name from its path: `/order-history` gives `Order History`."""
    return path.strip("/").replace("-", " ").title() or "Home"


def link(path: str) -> str:
    """An HTML link to a page, named after it."""
    return f'<a href="{path}">{label(path)}</a>'
