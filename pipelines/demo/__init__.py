"""The web demo's logic, free of Gradio: `app.py` at the repository root holds the page and its wiring.

- `models`: every shipped model, loaded once from `hub_cards` (the lookup the commands use);
- `digits`: conditional digits with the scoring classifier's verdict, and the reverse process as frames;
- `faces`: DDIM from the face model's noises (shipped or uploaded), slerp/lerp between two, the eta grid;
- `adapt`: an uploaded or drawn digit through the adapted DANN model.

Every function here raises `ValueError` (or `FileNotFoundError`) with a one-line message for bad input, as
the commands do; the page shows that message.
"""
