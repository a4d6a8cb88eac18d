"""Teacher calibration on SOURCE labels: an LLM sees the prompt it will see in distillation."""
import numpy as np

from fusionlog.config import TeacherConfig
from fusionlog.dataset import build_train_data
from fusionlog.pipeline import calibrate_teacher
from fusionlog.teachers import Example, Teacher

from tests.unit._synthetic import make_system


class _Recording(Teacher):
    uses_examples = True

    def __init__(self):
        super().__init__()
        self.requests = []

    def score(self, requests):
        self.requests.extend(requests)
        return np.array([len(r.templates) / 10 for r in requests], dtype=np.float64)


def test_calibration_requests_carry_the_target_name_and_retrieved_examples():
    data = build_train_data([make_system("SRC", n_seq=80, seed=1)], make_system("TGT", n_seq=20, seed=2), 0.25, 0)
    teacher = _Recording()
    ex = [Example(["e1", "e2"], 1, 0.9)]
    info = calibrate_teacher(teacher, TeacherConfig(calibration_samples=0), data.table.templates, data, "TGT", 0,
                             examples=lambda i: ex)
    assert info["calibrated"] and len(teacher.requests) == len(data.source_val)
    assert all(r.system == "TGT" and r.examples == ex for r in teacher.requests)
    assert teacher.threshold == info["threshold"]
    off = _Recording()
    assert calibrate_teacher(off, TeacherConfig(calibrate=False), data.table.templates, data, "TGT", 0) == {
        "calibrated": False, "threshold": 0.5}
