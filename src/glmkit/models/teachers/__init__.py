"""Frozen teachers for CogViT stage 1 feature distillation (GLM-5V-Turbo section 2.1).

``teacher(images_in_0_1) -> TeacherOutput(features [B, h*w, D] float32, grid_size (h, w))``:
SigLIP2 (semantic) and DINOv3 (texture) through transformers, or any timm ViT.
"""

from glmkit.models.teachers.base import TEACHERS, Teacher, TeacherOutput
from glmkit.models.teachers.dinov3 import DINOv3Teacher
from glmkit.models.teachers.siglip2 import SigLIP2Teacher
from glmkit.models.teachers.timm_teacher import TimmTeacher

__all__ = ["TEACHERS", "DINOv3Teacher", "SigLIP2Teacher", "Teacher", "TeacherOutput", "TimmTeacher"]
