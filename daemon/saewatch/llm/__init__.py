"""The optional LLM behind labels and summaries (``labels.llm``: any OpenAI-compatible
chat-completions endpoint): a client (:mod:`.client`), comparison narratives (:mod:`.summary`)
and labels from top contexts, scored on held-out ones (:mod:`.labels`).

Shared by the export stage (narratives on the report page and in the API) and the offline
labelling tools; it imports only config, errors and models.
"""
