# Sourced by the scripts that check docclass against Python libraries: creates the
# throw-away venv .cache/reference-venv once (pinned versions) and sets $VENV.
VENV=.cache/reference-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "scikit-learn==1.9.1" "seqeval==1.2.2" "numpy==2.4.6"
fi
