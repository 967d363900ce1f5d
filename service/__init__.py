"""The embedding HTTP service: `gunicorn -c service/gunicorn.conf.py 'service:create_app()'`."""
from __future__ import annotations

from flask import Flask

from trainer import artifact


def create_app(config: dict | None = None) -> Flask:
    """Build the app: settings from defaults, then the environment (MODEL_DIR, INDEX, SKIPGRAM_*), then
    `config`; open the model folder (memory-mapped) and its derived data (service.derived: mapped from the
    cache when prepared, else prepared here); add the explorer page at / (service.explorer), request ids,
    JSON access lines, /metrics (service.observability) and the optional API key (service.auth).

    Under gunicorn the model is read from the files the master holds open (the SERVING setting), so every
    worker serves the contents the master prepared, whatever the folder holds now.

    Raises trainer.artifact.ModelError, naming the file and the problem, for an unusable model folder, and
    service.settings.SettingsError for an unusable setting: under gunicorn the worker then fails to boot.
    """
    # Imported here, not at the top: the gunicorn master reads service.settings and must not load FAISS.
    from service import api, auth, derived, explorer, observability, settings
    from service.embeddings import Embeddings

    app = Flask(__name__)
    settings.configure(app.config, config)
    serving = app.config["SERVING"]
    model = artifact.load(app.config["MODEL_DIR"], check_values=False,  # values: checked where prepared
                          held=serving["held"] if serving else None)
    prepared = derived.open_prepared(model, app.config)
    embeddings = app.extensions["embeddings"] = Embeddings(model, prepared, app.config)
    app.extensions["openapi"] = api.openapi_document(app.config, model.dim)
    app.register_blueprint(api.bp)
    app.register_blueprint(explorer.bp)
    # Request ids, access lines and metrics first: the requests the key check refuses are counted too.
    observability.install(app, embeddings.describe(), prepared.prepare_seconds,
                          reload_failed=app.config["RELOAD_ERROR"] is not None)
    auth.install(app)
    return app
