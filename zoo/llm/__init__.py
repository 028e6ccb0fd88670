"""Language-model pieces shared by the language agents (tiny local models; hub models by id or path)."""
