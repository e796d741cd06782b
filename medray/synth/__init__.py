"""Knowledge-aware synthesis: LLM engines, generated items and their checks."""
