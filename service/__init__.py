"""The embedding HTTP service: `gunicorn -c service/gunicorn.conf.py 'service:create_app()'`."""
from __future__ import annotations

from flask import Flask

from trainer import artifact


def create_app(config: dict | None = None) -> Flask:
    """Build the app: settings from defaults, then the environment (MODEL_DIR, INDEX, SKIPGRAM_*), then
    `config`; load the model folder and build (or read) its index and tables.

    Raises trainer.artifact.ModelError, naming the file and the problem, for an unusable model folder, and
    service.settings.SettingsError for an unusable setting: under gunicorn the worker then fails to boot.
    """
    # Imported here, not at the top: `python -m service.precompute` imports this package first and must
    # not find its own module already imported through it.
    from service import api, settings
    from service.embeddings import Embeddings

    app = Flask(__name__)
    settings.configure(app.config, config)
    model = artifact.load(app.config["MODEL_DIR"])
    app.extensions["embeddings"] = Embeddings(model, app.config)
    app.extensions["openapi"] = api.openapi_document(app.config, model.dim)
    app.register_blueprint(api.bp)
    return app
