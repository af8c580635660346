"""Planning: the execution plan of a tasks file, its predictions, and how it reads (text,
Mermaid)."""
