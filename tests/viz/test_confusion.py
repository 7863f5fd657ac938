import numpy as np

from lstmkit.viz.confusion import confusion_matrix, plot_confusion


def test_confusion_matrix_counts_true_by_predicted():
    conf = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    assert conf.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_plot_confusion_writes_a_png(tmp_path):
    conf = np.array([[5, 1], [2, 7]])
    path = plot_confusion(conf, tmp_path / "c.png", ["neg", "pos"], "test: accuracy 80.0%")
    assert path == tmp_path / "c.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
