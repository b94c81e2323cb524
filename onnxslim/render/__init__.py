"""Every report rendered in one place: rich tables (tables), HTML pages (html), JSON files (json),
progress bars (progress), and how figures read (format)."""
