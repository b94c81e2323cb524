"""onnxslim's own rewrite rules (onnxscript pattern rules), for what onnxscript's rule set misses.

Each module exports `rules`: a tuple of `onnxscript.rewriter.pattern.RewriteRule`.
"""
