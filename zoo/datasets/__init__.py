"""Datasets: preference datasets and the scripted teachers that label them.

- :class:`PreferenceDataset` (:mod:`zoo.datasets.preferences`): labelled pairs of
  segments over flat arrays, built from a :class:`~zoo.buffers.TrajectoryStore`
  or from arrays, saved as a validated ``.npz``.
- Teachers (:mod:`zoo.datasets.teachers`): :func:`reward_sum_teacher`,
  :func:`regret_teacher` and the labelling rule :func:`labels_from_scores`; the B-Pref scripted teachers
  (:class:`ScriptedTeacher`: oracle, noisy, mistake, skip, equal, myopic) that answer online queries.
- :mod:`zoo.datasets.metaworld_prefs`: MetaWorld preference datasets from
  degraded scripted experts (a module of its own; running it needs the metaworld extra).
"""

from zoo.datasets.preferences import FORMAT, FORMAT_VERSION, PreferenceDataset, to_torch
from zoo.datasets.teachers import (
    TEACHER_MODES,
    ScoreFn,
    ScriptedTeacher,
    TeacherAnswer,
    TeacherConfig,
    labels_from_scores,
    regret_teacher,
    reward_sum_teacher,
    teacher_name,
)

__all__ = ["FORMAT", "FORMAT_VERSION", "PreferenceDataset", "ScoreFn", "labels_from_scores", "regret_teacher",
           "reward_sum_teacher", "teacher_name", "to_torch", "TEACHER_MODES", "ScriptedTeacher", "TeacherAnswer",
           "TeacherConfig"]
