"""Clients for the vendors' masked-edit APIs (PiktID v2, PICPIK, Photio, OctoAI-compatible
/adetailer) over one shared HTTP layer (`http`), with keys read from the environment or a user
config file (`keys`). No ComfyUI imports; `remote` runs them for the RemoteVendorInpaint node."""
