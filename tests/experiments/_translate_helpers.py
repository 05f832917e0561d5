"""Helpers of the translate tests: the tiny corpus, running `attnkit` in-process, flags for a
few-second training run."""

from __future__ import annotations

from attnkit.cli import main

SUBJECTS = [("file", "fichier"), ("folder", "dossier"), ("window", "fenêtre"),
            ("message", "message"), ("picture", "image"), ("document", "document")]
VERBS = [("Open", "Ouvrir"), ("Close", "Fermer"), ("Delete", "Supprimer"),
         ("Save", "Enregistrer"), ("Rename", "Renommer"), ("Print", "Imprimer")]
PLACES = [("now", "maintenant"), ("later", "plus tard"), ("again", "encore une fois"),
          ("from the list", "de la liste"), ("in the background", "en arrière-plan")]


def corpus_entries():
    """180 message pairs: every verb x subject x place."""
    return [(None, f"{v} the selected {s} {p}", None,
             (f"{vf} le {sf} sélectionné {pf}",))
            for v, vf in VERBS for s, sf in SUBJECTS for p, pf in PLACES]



def run_cli(argv, capsys):
    """Run ``attnkit argv`` in-process; returns (exit code, stdout, stderr).

    Usage errors leave argparse through SystemExit; they are returned as their code too.
    """
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def train_args(data_dir, out, *extra):
    """``translate train`` flags for a few-second run on the test corpus."""
    return ["translate", "train", "--size", "tiny", "--vocab-size", "300", "--minutes", "5",
            "--max-steps", "6", "--eval-every", "3", "--checkpoint-every", "3",
            "--max-tokens", "400", "--test-limit", "4", "--beam-size", "2", "--no-progress",
            "--data-dir", str(data_dir), "--out", str(out), *extra]
