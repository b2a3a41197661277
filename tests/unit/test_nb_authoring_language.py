"""A master's language travels to its student version: the notebook metadata
``"labkit": {"language": "pl"}`` is what the kernel reads to give check feedback in Polish."""

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from labkit.course.authoring import student_notebook


def polish_master():
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python", "version": "3.11.9"},
        "labkit": {"language": "pl"},
        "nbgrader": {"x": 1},
    }
    nb.cells = [new_code_cell("### BEGIN SOLUTION\nodpowiedz = 42\n### END SOLUTION")]
    return nb


def test_the_student_version_keeps_the_notebooks_language():
    student = student_notebook(polish_master(), "pl/00_start_here.ipynb")
    assert student.metadata == {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "labkit": {"language": "pl"},
    }
    nbformat.validate(student)


def test_a_master_without_a_language_gets_none_in_its_student_version():
    master = polish_master()
    del master.metadata["labkit"]
    assert "labkit" not in student_notebook(master, "00_start_here.ipynb").metadata
