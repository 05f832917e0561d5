"""English->French (or German) translation on gettext catalogs: ``attnkit translate``.

The package holds one concept per module:

- :mod:`~attnkit.experiments.translate.config`: model kinds, :class:`TranslateConfig`,
  :class:`CompareConfig`, the ``--quick`` preset (pure data, imported here);
- :mod:`~attnkit.experiments.translate.model`: the network behind each model kind;
- :mod:`~attnkit.experiments.translate.run`: ``train(config)``, one run end to end;
- :mod:`~attnkit.experiments.translate.translator`: ``Translator``, ``load_translator``,
  ``translate_text``;
- :mod:`~attnkit.experiments.translate.evaluate`: sacreBLEU BLEU/chrF, by source length;
- :mod:`~attnkit.experiments.translate.report`: the run's report directory;
- :mod:`~attnkit.experiments.translate.compare`: several models under one budget;
- :mod:`~attnkit.experiments.translate.cli`: the ``attnkit translate`` command.

Only the config names are imported here, so that the command line can be built without
loading torch; import the functions from their modules.
"""

from attnkit.experiments.translate.config import (
    MODEL_KINDS,
    PRESETS,
    CompareConfig,
    TranslateConfig,
)

__all__ = ["MODEL_KINDS", "PRESETS", "TranslateConfig", "CompareConfig"]
