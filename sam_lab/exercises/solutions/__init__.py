"""Reference solutions to the lessons' "your turn" exercises, one module per lesson.

``lesson_XX.py`` defines ``TURNS``, a list of :class:`sam_lab.exercises.turns.Turn`; each turn
names its solution, written here as a learner would write it (not an import of the library's
own code). ``SAM_LAB_SOLUTIONS=1`` makes :func:`sam_lab.exercises.your_turn` hand these out, which
is how ``make test`` runs every lesson. Try the exercise before you read its solution.
"""
